"""``preprocess.json``: timm's eval transform for the variant's data config, spelled out as the steps a Pillow + numpy
loader repeats (predict.py), so the exported folder preprocesses exactly as the measurement's data loader did.

timm builds the eval transform from ``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct`` and
``crop_mode`` (:func:`timm.data.transforms_factory.transforms_imagenet_eval`): the image is resized to
``floor(size / crop_pct)`` (the shorter side for ``center``, both sides for ``squash``, the longer side for
``border``), center-cropped (``border`` pads with the mean colour first), scaled to [0, 1] and normalized.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from data.errors import InputError

DEFAULT_CROP_PCT = 0.875  # timm's default when a data config has none
CROP_MODES = ("center", "squash", "border")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


def _numbers(value: Any, what: str) -> list[float]:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        raise InputError(f"the variant's data config has no usable {what} ({value!r})") from None
    return out


def preprocess_spec(data_config: Mapping[str, Any]) -> dict[str, Any]:
    """The preprocessing of a data config as plain steps (see the module doc); refuses what it cannot repeat."""
    if not isinstance(data_config, Mapping) or "input_size" not in data_config:
        raise InputError("the variant's manifest has no data_config with an input_size")
    channels, height, width = (int(v) for v in _numbers(data_config["input_size"], "input_size"))
    if channels != 3:
        raise InputError(f"the exported preprocessing reads RGB images; this model takes {channels} channels")
    interpolation = str(data_config.get("interpolation") or "bilinear")
    if interpolation not in INTERPOLATIONS:
        raise InputError(f"interpolation {interpolation!r} has no Pillow equivalent here")
    crop_pct = float(data_config.get("crop_pct") or DEFAULT_CROP_PCT)
    crop_mode = str(data_config.get("crop_mode") or "center")
    if crop_mode not in CROP_MODES:
        raise InputError(f"crop_mode {crop_mode!r} is not one of {', '.join(CROP_MODES)}")
    mean = _numbers(data_config.get("mean", (0.485, 0.456, 0.406)), "mean")
    std = _numbers(data_config.get("std", (0.229, 0.224, 0.225)), "std")
    mean, std = (mean * 3 if len(mean) == 1 else mean), (std * 3 if len(std) == 1 else std)
    scale = [math.floor(height / crop_pct), math.floor(width / crop_pct)]
    if crop_mode == "squash":
        resize = "squash"
    elif crop_mode == "border":
        resize = "longest_keep_ratio"
    else:
        resize = "shorter_side" if scale[0] == scale[1] else "shorter_keep_ratio"
    fill = [round(255 * v) for v in mean] if crop_mode == "border" else [0, 0, 0]
    return {
        "input_size": [channels, height, width],
        "color": "RGB (Pillow's convert('RGB'); EXIF orientation not applied)",
        "layout": "NCHW",
        "channel_order": "RGB",
        "dtype": "float32",
        "interpolation": interpolation,
        "crop_pct": crop_pct,
        "crop_mode": crop_mode,
        "resize": resize,
        "scale_size": scale,
        "crop_size": [height, width],
        "pad_fill": fill,
        "scale": "1/255",
        "mean": mean,
        "std": std,
        "steps": _steps(resize, scale, height, width, interpolation, crop_mode),
        "timm": {
            "input_size": [channels, height, width],
            "interpolation": interpolation,
            "mean": mean,
            "std": std,
            "crop_pct": crop_pct,
            "crop_mode": crop_mode,
        },
    }


def _steps(resize: str, scale: list[int], height: int, width: int, interpolation: str, mode: str) -> list[str]:
    how = {
        "shorter_side": f"resize the shorter side to {scale[0]} px, keeping the aspect ratio",
        "shorter_keep_ratio": f"resize to fit {scale[0]}x{scale[1]} by the shorter side, keeping the aspect ratio",
        "longest_keep_ratio": f"resize the longer side to fit {scale[0]}x{scale[1]}, keeping the aspect ratio",
        "squash": f"resize to exactly {scale[0]}x{scale[1]} (aspect ratio not kept)",
    }[resize]
    pad = "the mean colour" if mode == "border" else "black"
    return [
        "decode with Pillow and convert to RGB",
        f"{how} ({interpolation})",
        f"center crop to {height}x{width} (a smaller image is padded with {pad} first)",
        "scale to [0, 1] (divide by 255) and normalize: (x - mean) / std per channel",
        "channels first: (3, height, width) float32; a batch is (N, 3, height, width)",
    ]
