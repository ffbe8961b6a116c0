"""Whether a model can take a square input of a given size: a forward that fails, or an input smaller than the
model's total stride (its last layers would see padding only), is bad input found before any work."""

from __future__ import annotations

from typing import Any

from data.errors import InputError


def check_input_size(model: Any, arch: str, img_size: int | None) -> None:
    """Raise :class:`InputError` naming ``--img-size`` when ``model`` cannot take ``img_size`` (None: not given)."""
    if img_size is None:
        return
    if img_size <= 0:
        raise InputError(f"--img-size must be positive, got {img_size}")
    import torch

    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, img_size, img_size))
    except Exception as exc:  # noqa: BLE001 - any failure of the forward means the size does not work
        first = str(exc).strip().splitlines()[0][:150] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--img-size {img_size}: {arch} cannot take this input size ({first})") from None
    info = getattr(model, "feature_info", None)
    stride = info[-1].get("reduction") if isinstance(info, list) and info and isinstance(info[-1], dict) else None
    if stride and img_size < stride:
        raise InputError(
            f"--img-size {img_size}: {arch} cannot take this input size: it is smaller than the model's "
            f"total stride ({stride} px), so its last layers would see padding only; use at least {stride}"
        )
