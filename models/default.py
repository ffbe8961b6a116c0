"""The embedded default: a small timm model trained once on scikit-learn's digits and cached.

Every command that gets no checkpoint uses it, so a new user sees a real end-to-end run with no download.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_ARCH = "resnet10t"
DEFAULT_DATA = "digits"
DEFAULT_EPOCHS = 8


def results_dir() -> Path:
    """Root of run outputs and caches; ``OPTBENCH_RESULTS`` moves it (tests point it at tmp_path)."""
    return Path(os.environ.get("OPTBENCH_RESULTS", "results"))


def default_checkpoint_path() -> Path:
    return results_dir() / "checkpoints" / f"default-{DEFAULT_ARCH}-{DEFAULT_DATA}.pt"


def ensure_default_checkpoint(epochs: int = DEFAULT_EPOCHS) -> Path:
    """Return the cached default checkpoint, training it first if it is missing (about a minute on 2 cores)."""
    from models.train import TrainConfig, train_checkpoint

    path = default_checkpoint_path()
    if path.is_file():
        return path
    print(f"training the embedded default ({DEFAULT_ARCH} on {DEFAULT_DATA}) once; cached at {path}", file=sys.stderr)
    train_checkpoint(DEFAULT_ARCH, DEFAULT_DATA, str(path), TrainConfig(epochs=epochs, seed=0))
    return path
