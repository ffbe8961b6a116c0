"""The configuration a run carries for each of its scenarios (:class:`ScenarioConfig`: stored in run_config.json
and read back strictly) and a leaderboard column a scenario fills (:class:`Column`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from data.errors import InputError


@dataclass(frozen=True)
class ScenarioConfig:
    """One scenario of a run: its name, batch, timing budget, and options of its own (``options``)."""

    name: str
    batch_size: int
    warmup_iters: int = 10
    warmup_seconds: float = 1.0
    min_iters: int = 50
    min_seconds: float = 3.0
    max_seconds: float = 60.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["options"] = dict(self.options)
        if not out["options"]:
            out.pop("options")  # the layout run_config.json had before scenarios took options
        return out

    @staticmethod
    def from_dict(item: Any) -> ScenarioConfig:
        names = {f.name for f in fields(ScenarioConfig)}
        if not isinstance(item, Mapping) or set(item) - names or "name" not in item:
            raise InputError(f"run configuration: unreadable scenario {item!r}")
        return ScenarioConfig(**{**item, "options": dict(item.get("options") or {})})


@dataclass(frozen=True)
class Column:
    """A leaderboard column a scenario fills from its row: ``name`` in the leaderboard, ``source`` in the row."""

    name: str
    source: str
    header: str = ""  # with its unit, for the page (empty: left off the page)
    fmt: str = "{:.3g}"
    optional: bool = False  # a column of its own only when some row has it (device-only CUDA times, say)


def stop_columns(scenario: str) -> tuple[Column, Column]:
    """How a paired scenario's rounds ended (bench.run.stopping), as ``<scenario>_rounds`` and ``_stopped``."""
    rounds = Column(f"{scenario}_rounds", "rounds", optional=True)
    return rounds, Column(f"{scenario}_stopped", "stopped", optional=True)
