"""Building the module a checkpoint's weights belong to: a timm architecture or the user's factory, its class count,
its data config, and a message that names the keys when the weights do not fit."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.errors import CheckpointError
from models._formats import RawCheckpoint, fit_keys
from models.info import ModelInfo
from models.spec import LoadSpec

DATA_CONFIG_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")


def _check_arch(arch: str) -> None:
    import timm

    if not timm.is_model(arch):
        name = arch.split(".")[0]
        names = timm.list_models()
        # Names that start with what was typed first (resnet10 -> resnet10t), then the closest spellings.
        close = [n for n in names if n.startswith(name)][:3]
        close += [n for n in difflib.get_close_matches(name, names, n=6, cutoff=0.6) if n not in close]
        close = close[:6]
        hint = f" Similar timm names: {', '.join(close)}." if close else " See timm.list_models()."
        raise CheckpointError(f"unknown timm architecture {arch!r}.{hint} (your own class: --model pkg.module:fn)")


def plain_data_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in DATA_CONFIG_KEYS:
        if key in cfg and cfg[key] is not None:
            value = cfg[key]
            out[key] = list(value) if isinstance(value, tuple | list) else value
    return out


def resolve_data_config(model: nn.Module, img_size: int | None = None) -> dict[str, Any]:
    """timm's data config for ``model`` (input size, mean/std, interpolation, crop), optionally resized."""
    from timm.data import resolve_data_config as timm_resolve

    args: dict[str, Any] = {}
    if img_size:
        args["input_size"] = (3, int(img_size), int(img_size))
    return plain_data_config(timm_resolve(args, model=model))


def _classifier_key(model: nn.Module) -> str | None:
    """Name of the classifier weight in timm's layout, from the model's pretrained config."""
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier")
    names = [classifier] if isinstance(classifier, str) else list(classifier or [])
    keys = set(model.state_dict())
    for name in names:
        if name and f"{name}.weight" in keys:
            return f"{name}.weight"
    return None


def mismatch_message(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, path: Path) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} shape mismatches (checkpoint vs model): {'; '.join(wrong[:3])}")
    if missing:
        parts.append(f"{len(missing)} missing keys: {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {', '.join(unexpected[:3])}")
    return f"{path} does not fit {what}: " + "; ".join(parts) + " (wrong --model, --model-kwargs or --num-classes?)"


def create_model(arch: str, num_classes: int) -> nn.Module:
    """A randomly initialised timm model (never downloads weights)."""
    import timm

    _check_arch(arch)
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def instantiate(info: ModelInfo, device: str | torch.device | None = None) -> nn.Module:
    """A fresh, unpruned module of the architecture ``info`` describes (``device="meta"``: shapes only)."""
    from models.factory import build_from_factory

    with torch.device(device or "cpu"):
        if info.factory:
            return build_from_factory(info.factory, info.model_kwargs)
        return create_model(info.arch, info.num_classes)


def timm_model(arch: str, raw: RawCheckpoint, spec: LoadSpec, path: Path) -> tuple[nn.Module, dict]:
    """The timm model the weights fit, with the class count read from the weights; and the fitted state dict."""
    import timm

    _check_arch(arch)
    with torch.device("meta"):
        shape_only = timm.create_model(arch, pretrained=False)
    state_dict = fit_keys(raw.state_dict, shape_only.state_dict())
    classes = raw.header.get("num_classes")
    if not classes:
        key = _classifier_key(shape_only)
        if key is None or key not in state_dict:
            hint = raw.header.get("num_classes_hint")
            if not hint and not spec.num_classes:
                expected = shape_only.state_dict()
                found = len(set(state_dict) & set(expected))
                raise CheckpointError(
                    f"cannot infer the class count of {path}: no classifier weight {key!r} for {arch}, and only "
                    f"{found} of {arch}'s {len(expected)} weights are in it: check --model (or pass --num-classes if "
                    "the architecture is right)"
                    if found < len(expected) // 2
                    else f"cannot infer the class count of {path}: no classifier weight {key!r} for {arch}; "
                    "pass --num-classes"
                )
            classes = hint or spec.num_classes
        else:
            classes = int(state_dict[key].shape[0])
    if spec.num_classes and spec.num_classes != classes:
        raise CheckpointError(
            f"{path} has {classes} classes but --num-classes says {spec.num_classes}; drop --num-classes or fix it"
        )
    return create_model(arch, int(classes)), state_dict


def output_classes(model: nn.Module, input_size: list[int], name: str = "the model") -> int:
    """Class count of a custom model: the width of its output for one input of the data config's size.

    The user's own forward may fail on that input (a head sized for another feature width, a size the model
    cannot take): that is bad input, said in one line with the model, the shape and the error."""
    shape = (1, *[int(v) for v in input_size])
    try:
        with torch.inference_mode():
            out = model.eval()(torch.zeros(shape))
    except Exception as exc:  # noqa: BLE001 - any failure of the user's forward is the same finding
        lines = str(exc).strip().splitlines()
        first = lines[0][:200] if lines else ""
        raise CheckpointError(
            f"{name} fails on an input of shape {shape}: {type(exc).__name__}: {first} (check the model's head "
            "width, --model-kwargs or --img-size)"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CheckpointError(f"the model must return logits of shape (batch, classes), it returned {shape}")
    return int(out.shape[1])


def apply_overrides(data_config: dict[str, Any], spec: LoadSpec) -> dict[str, Any]:
    out = dict(data_config)
    if spec.img_size:
        out["input_size"] = [3, int(spec.img_size), int(spec.img_size)]
    for name in ("mean", "std"):
        value = getattr(spec, name)
        if value:
            out[name] = list(value) * 3 if len(value) == 1 else list(value)
    return out
