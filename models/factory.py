"""The user's own model class: ``--model my_pkg.my_module:build`` with ``--model-kwargs num_classes=43``.

Users wrap a timm backbone in their own head, or write a model from scratch; the checkpoint then holds weights
that no timm name describes. A factory is any importable callable that returns an ``nn.Module``. It is named
only by the user (command line, or a run configuration they confirm): a checkpoint or a variant directory
never chooses code to import.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from data.errors import CheckpointError

_SPEC_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
# The data config of a model with no timm part: timm's own defaults (ImageNet statistics, 224 px, 0.875 crop).
DEFAULT_DATA_CONFIG: dict[str, Any] = {
    "input_size": [3, 224, 224],
    "interpolation": "bilinear",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "crop_pct": 0.875,
    "crop_mode": "center",
}


OWN_PACKAGES = ("bench", "optim", "models", "data")  # optbench's top-level packages: a user's of the same name loses


def import_factory(spec: str, option: str = "--model") -> Callable[..., Any]:
    """Import ``package.module:callable`` (the attribute may be dotted, e.g. ``mod:Net.from_config``); errors name
    ``option``, the command-line option the user wrote it in."""
    if not _SPEC_RE.match(spec):
        raise CheckpointError(f"{option} {spec!r}: write it as package.module:callable")
    module_name, attr = spec.split(":", 1)
    top = module_name.split(".")[0]
    if top in OWN_PACKAGES:
        raise CheckpointError(
            f"{option} {spec}: {top!r} is the name of one of optbench's own packages ({', '.join(OWN_PACKAGES)}), "
            "which come first on the import path; rename your package"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise CheckpointError(
            f"{option} {spec}: cannot import {missing!r} (install it, or run from the folder that holds it / add it "
            "to PYTHONPATH)"
        ) from None
    except Exception as exc:  # the user's module failed while importing: name it, one line
        failure = f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"{option} {spec}: importing {module_name} failed ({failure})") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise CheckpointError(f"{option} {spec}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise CheckpointError(f"{option} {spec}: {attr} is not callable")
    return target


def build_from_factory(spec: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Call the factory; anything but an ``nn.Module`` back is one-line bad input."""
    factory = import_factory(spec)
    try:
        model = factory(**dict(kwargs))
    except Exception as exc:
        raise CheckpointError(
            f"--model {spec}: calling it with {dict(kwargs)} failed ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"--model {spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def timm_part(model: nn.Module) -> nn.Module | None:
    """The outermost timm model inside ``model`` (a backbone under the user's head), if any."""
    for module in model.modules():
        cfg = getattr(module, "pretrained_cfg", None)
        if isinstance(cfg, Mapping) and cfg.get("input_size"):
            return module
    return None


def data_config_of(model: nn.Module) -> dict[str, Any]:
    """The data config of a custom model: its timm backbone's, else timm's defaults."""
    part = timm_part(model)
    if part is None:
        return {k: list(v) if isinstance(v, list) else v for k, v in DEFAULT_DATA_CONFIG.items()}
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=part)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k in DEFAULT_DATA_CONFIG}
