"""What we know about a loaded model besides its weights: plain values, so it goes into manifests and rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    """What we know about a loaded model besides its weights; plain values only (goes into manifests).

    ``arch`` is the timm name, or the ``package.module:callable`` of the user's own model (then ``factory``
    repeats it and ``model_kwargs`` holds its arguments). ``placeholders`` names the classes the checkpoint
    pickled that were read as inert data instead of being imported.
    """

    arch: str
    num_classes: int
    data_config: dict[str, Any]
    class_names: tuple[str, ...] = ()
    data_spec: str | None = None
    source: str | None = None
    sha256: str | None = None
    source_format: str = "optbench"
    metrics: dict[str, Any] = field(default_factory=dict)
    pruned_layers: dict[str, Any] | None = None
    factory: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    placeholders: tuple[str, ...] = ()

    @property
    def input_size(self) -> tuple[int, int, int]:
        c, h, w = self.data_config["input_size"]
        return int(c), int(h), int(w)

    @property
    def has_weights(self) -> bool:
        return self.source_format != "random-init"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["placeholders"] = list(self.placeholders)
        return d


@dataclass
class LoadedModel:
    """A model in eval mode plus its :class:`ModelInfo`; ``model`` is None where a process read only a saved
    variant's manifest (it times the variant's own file and never builds the source model)."""

    model: nn.Module | None
    info: ModelInfo
