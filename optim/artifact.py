"""What flows between recipe steps (:class:`Artifact`) and what every build context offers (:class:`BuildContext`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.loaders import CALIB_SIZE
from models.checkpoint import LoadedModel


@dataclass
class Artifact:
    """The output of one step.

    ``kind`` is one of the registry's kinds. A ``module``/``graph`` artifact carries ``module``; an ``onnx``
    artifact carries ``onnx_path``; a ``runtime`` artifact carries ``predict`` and ``prepare_input``.
    ``memory_format``/``autocast_dtype``/``input_dtype`` tell how to call a module-like artifact.
    ``steps`` accumulates each step's manifest entry (config, build seconds, notes), ``files`` the artifacts on disk.
    """

    kind: str
    module: nn.Module | None = None
    onnx_path: Path | None = None
    predict: Callable[[Any], torch.Tensor] | None = None
    prepare_input: Callable[[torch.Tensor], Any] | None = None
    memory_format: torch.memory_format | None = None
    autocast_dtype: torch.dtype | None = None
    input_dtype: torch.dtype | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    save_hook: Callable[[Path], dict[str, Any]] | None = None  # writes what load() needs; returns manifest "load"


# ``BuildContext.options`` key: False where the variant is about to be timed properly (a sweep's measurement
# process), so a step leaves out the quick in-process speed check it makes for a standalone command.
BUILD_SPEED_CHECK = "build_speed_check"


@dataclass
class BuildContext:
    """Everything a step may need. ``data`` is built lazily: eager steps never pay for a dataset.

    Made by :func:`optim.context.build_context` from a run configuration, so a recipe is built the same way by
    every command."""

    loaded: LoadedModel
    device: str
    workdir: Path
    threads: int
    seed: int = 0
    quick: bool = False
    calib_size: int = CALIB_SIZE
    max_drop: float = 1.0  # top-1 budget in points, for builds that control accuracy themselves
    data_factory: Callable[[], Any] | None = None
    data_spec: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    _data: Any = None

    @property
    def data(self):
        """The :class:`data.DataBundle` (train/calib/val); raises InputError if there is none to build."""
        if self._data is None:
            if self.data_factory is None:
                from data.errors import InputError

                raise InputError("this recipe needs data (calibration or fine-tuning); pass --data")
            self._data = self.data_factory()
        return self._data

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        c, h, w = self.loaded.info.input_size
        return torch.randn(batch_size, c, h, w, generator=torch.Generator().manual_seed(self.seed))
