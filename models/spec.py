"""How to load a checkpoint: one value, built once by each command and handed whole to every process it starts.

A plain state dict needs ``--model``, a custom head needs a factory and its keyword arguments, a checkpoint at
another resolution needs ``--img-size``. All of that travels together as a :class:`LoadSpec`, so no process can
load the checkpoint differently from the one the user ran (a worker that lost ``--model`` measured nothing).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from data.errors import CheckpointError, InputError


@dataclass(frozen=True)
class LoadSpec:
    """Checkpoint path (a file, a timm folder, or None for random weights) and everything needed to read it.

    ``model`` is a timm architecture name or ``package.module:callable`` (a factory returning an ``nn.Module``,
    called with ``model_kwargs``). ``num_classes`` is checked against the checkpoint; ``img_size``, ``mean`` and
    ``std`` override the data config the checkpoint or the model records.
    """

    path: str | None = None
    model: str | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    img_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def factory(self) -> str | None:
        """The ``package.module:callable`` of the user's own model class, or None for a timm name."""
        return self.model if self.model and ":" in self.model else None

    @property
    def random_init(self) -> bool:
        return self.path is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "model": self.model,
            "model_kwargs": dict(self.model_kwargs),
            "num_classes": self.num_classes,
            "img_size": self.img_size,
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> LoadSpec:
        """Read back what :meth:`to_dict` wrote; an unknown or mistyped field is an error, not a default."""
        if not isinstance(data, Mapping):
            raise InputError(f"a load spec must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(LoadSpec)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown load spec field(s): {', '.join(unknown)}")
        kwargs = data.get("model_kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise InputError("load spec field model_kwargs must be an object")
        spec = LoadSpec(
            path=_optional(data, "path", str),
            model=_optional(data, "model", str),
            model_kwargs=dict(kwargs),
            num_classes=_optional(data, "num_classes", int),
            img_size=_optional(data, "img_size", int),
            mean=_floats(data.get("mean"), "mean"),
            std=_floats(data.get("std"), "std"),
        )
        return spec.validated()

    def validated(self) -> LoadSpec:
        """Check the values (the CLI parsers and :meth:`from_dict` both end here)."""
        for name in ("num_classes", "img_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive, got {value}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) not in (1, 3):
                raise InputError(f"--{name} takes 1 or 3 comma-separated numbers, got {len(value)}")
        if self.std and any(v <= 0 for v in self.std):
            raise InputError(f"--std values must be positive, got {','.join(f'{v:g}' for v in self.std)}")
        if self.model_kwargs and not self.factory:
            raise InputError("--model-kwargs needs --model package.module:callable (a model factory)")
        if self.random_init and not self.model:
            raise CheckpointError("no checkpoint given: pass a checkpoint path, or --model ARCH with --random-init")
        return self

    def to_cli_args(self) -> list[str]:
        """The options (without the checkpoint path) that rebuild this spec on a command line."""
        out: list[str] = []
        if self.model:
            out += ["--model", self.model]
        if self.model_kwargs:
            out += ["--model-kwargs", json.dumps(dict(self.model_kwargs))]
        for name in ("num_classes", "img_size"):
            if getattr(self, name) is not None:
                out += [f"--{name.replace('_', '-')}", str(getattr(self, name))]
        for name in ("mean", "std"):
            if getattr(self, name):
                out += [f"--{name}", ",".join(f"{v:g}" for v in getattr(self, name))]
        return out

    def differences(self, other: LoadSpec) -> dict[str, str]:
        """{option (``CKPT``, ``--img-size``, ...): "old -> new"} for each field in which ``other`` differs."""
        return {
            "CKPT" if f.name == "path" else "--" + f.name.replace("_", "-"): (
                f"{getattr(self, f.name)!r} -> {getattr(other, f.name)!r}"
            )
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }

    def describe(self) -> str:
        """One line for logs: what is loaded, and how."""
        what = self.path or "random weights"
        extra = [f"--model {self.model}"] if self.model else []
        if self.model_kwargs:
            extra.append("--model-kwargs " + ",".join(f"{k}={v}" for k, v in self.model_kwargs.items()))
        return what + (f" ({' '.join(extra)})" if extra else "")


def _optional(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is None:
        return None
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"load spec field {key} must be {kind.__name__}, got {value!r}")
    return value


def _floats(value: Any, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, int | float) for v in value):
        raise InputError(f"load spec field {name} must be a list of numbers, got {value!r}")
    return tuple(float(v) for v in value)


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """``"0.5,0.5,0.5"`` -> ``(0.5, 0.5, 0.5)`` for ``--mean``/``--std``."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{option} takes comma-separated numbers, e.g. 0.485,0.456,0.406; got {text!r}") from None
    if not values or any(not math.isfinite(v) for v in values):
        raise InputError(f"{option} takes comma-separated finite numbers, got {text!r}")
    return values


def parse_model_kwargs(text: str) -> dict[str, Any]:
    """``num_classes=43,drop_rate=0.1,pretrained=false`` (or a JSON object) -> keyword arguments of the factory.

    Values are read as JSON where they parse (numbers, true/false/null, quoted strings), else kept as strings.
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"--model-kwargs is not a valid JSON object ({exc.msg})") from None
        if not isinstance(value, dict):
            raise InputError("--model-kwargs must be key=value pairs or a JSON object")
        return value
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InputError(f"--model-kwargs takes key=value pairs separated by commas, got {part.strip()!r}")
        raw = raw.strip()
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = {"True": True, "False": False, "None": None}.get(raw, raw)
    return out
