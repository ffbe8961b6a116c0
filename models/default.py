"""The embedded default: a small timm model trained once on scikit-learn's digits and cached.

Every command that gets no checkpoint uses it, so a new user sees a real end-to-end run with no download.
"""

from __future__ import annotations

import sys
from pathlib import Path

from data.loaders import DIGITS as DEFAULT_DATA
from data.paths import cache_dir

DEFAULT_ARCH = "resnet10t"
DEFAULT_EPOCHS = 8


def default_checkpoint_path() -> Path:
    """In the cache folder, not the results folder: the same file from whichever folder a command runs."""
    return cache_dir() / "checkpoints" / f"default-{DEFAULT_ARCH}-{DEFAULT_DATA}.pt"


def ensure_default_checkpoint(epochs: int = DEFAULT_EPOCHS) -> Path:
    """Return the cached default checkpoint, training it first (once, about a minute) if it is missing."""
    from models.train import TrainConfig, train_checkpoint

    path = default_checkpoint_path()
    if path.is_file():
        return path
    print(f"training the embedded default ({DEFAULT_ARCH} on {DEFAULT_DATA}) once; cached at {path}", file=sys.stderr)
    train_checkpoint(DEFAULT_ARCH, DEFAULT_DATA, str(path), TrainConfig(epochs=epochs, seed=0))
    return path
