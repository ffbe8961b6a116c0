"""Checkpoints in, timm models out: ``models.load(path)`` and ``models.save(...)``; training in ``models.train``."""

from models.checkpoint import LoadedModel, ModelInfo, create_model, file_sha256, library_versions, load, save
from models.errors import CheckpointError, DataSpecError, InputError, MissingDependencyError

__all__ = [
    "CheckpointError",
    "DataSpecError",
    "InputError",
    "LoadedModel",
    "MissingDependencyError",
    "ModelInfo",
    "create_model",
    "file_sha256",
    "library_versions",
    "load",
    "save",
]
