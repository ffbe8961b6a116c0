"""Checkpoints in, timm models out: ``models.load(path)`` and ``models.save(...)``; training in ``models.train``.

Attributes are resolved lazily so ``from data.errors import InputError`` (every CLI does it) does not pay
for importing torch and timm.
"""

from __future__ import annotations

import importlib
from typing import Any

from data.errors import CheckpointError, DataSpecError, InputError, MissingDependencyError

_LAZY = {
    **{
        name: "models.checkpoint"
        for name in ("LoadedModel", "ModelInfo", "create_model", "file_sha256", "library_versions", "load", "save")
    },
    "LoadSpec": "models.spec",
}

__all__ = ["CheckpointError", "DataSpecError", "InputError", "MissingDependencyError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
