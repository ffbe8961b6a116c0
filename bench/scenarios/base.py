"""What every scenario is (:class:`Scenario`), the configuration a run carries for it (:class:`ScenarioConfig`), and
the timed loop the batch scenarios share (:class:`BatchScenario`: a fixed batch called back to back).

Everything downstream of a measurement reads a scenario through this interface: which row field is its figure and
which way is better (the gate, the answer), which leaderboard columns it fills (the leaderboard, the page, the
trackers), how its paired ratio becomes a speedup, and which options rebuild it (``--resume``, grid files).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from data.errors import InputError

T = TypeVar("T")


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


@dataclass
class TimedCall:
    """A warm call of a variant at a fixed batch: what a batch scenario's slices time."""

    call: Callable[[], Any]
    timer: Any
    batch: int
    note: str | None = None


class Scenario:
    """A way of timing a variant. Subclasses set the class attributes and override what differs."""

    name: str = ""
    description: str = ""
    paired: bool = True  # timed in slices interleaved with the fp32 reference
    default: bool = True  # measured in every run unless the run says otherwise
    headline: str = ""  # the row field that is the scenario's figure
    headline_column: str = ""  # the leaderboard column holding it
    unit: str = ""
    higher_is_better: bool = False
    columns: tuple[Column, ...] = ()  # figures copied from the row into the leaderboard, in order
    speedup_column: str | None = None  # the ratio against fp32, paired where the sweep paired it
    interval_columns: tuple[str, str] | None = None  # its 95% interval, where the leaderboard shows one

    def add_arguments(self, parser: Any) -> None:
        """The scenario's own command-line options (none by default)."""

    def config(self, options: Any, device: str) -> ScenarioConfig | None:
        """The scenario's configuration for a run with these parsed options, or None when it is not asked for."""
        raise NotImplementedError

    def cli_args(self, cfg: ScenarioConfig) -> list[str]:
        """The options that rebuild ``cfg`` (``--resume`` and grid files compare runs through them)."""
        return []

    def record(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The leaderboard fields this scenario's row gives its variant."""
        out = {c.name: row.get(c.source) for c in self.columns if row.get(c.source) is not None}
        return out

    def speedup(self, value: float, reference: float) -> float:
        """The variant's figure against fp32's as a speedup (> 1: better), when they were not paired."""
        if not (value > 0 and reference > 0):
            return math.nan
        return value / reference if self.higher_is_better else reference / value

    def speedup_from_time_ratio(self, ratio: float) -> float:
        """A paired time ratio (variant over fp32, per call) as a speedup."""
        return 1.0 / ratio if ratio > 0 else math.nan


class BatchScenario(Scenario):
    """A fixed batch called back to back: warm up, then time calls (in slices when paired, else all at once)."""

    def batch_size(self, options: Any, device: str) -> int:
        raise NotImplementedError

    def budgets(self, quick: bool) -> dict[str, Any]:
        raise NotImplementedError

    def config(self, options: Any, device: str) -> ScenarioConfig | None:
        return ScenarioConfig(self.name, self.batch_size(options, device), **self.budgets(bool(options.quick)))

    def prepare(self, variant: Any, input_size: Any, cfg: ScenarioConfig, seed: int, device: str) -> TimedCall:
        """Warm the call up once; on a GPU that runs out of memory, halve the batch (down to 1) and say so."""
        from models.timers import WallTimer, cuda_synchronize, warm_up

        timer = WallTimer(cuda_synchronize if device == "cuda" else None)

        def attempt(batch: int):
            host = host_batch(input_size, batch, seed, device)

            def call():
                return variant.predict(variant.prepare_input(host))

            warm_up(call, cfg, timer)
            return call

        call, batch, note = halve_on_oom(cfg.batch_size, attempt)
        return TimedCall(call, timer, batch, note)

    def time_slice(self, timed: TimedCall, seconds: float, min_calls: int) -> list[float]:
        """One slice: calls for ``seconds`` and at least ``min_calls`` (a slow call is a slice of one)."""
        from models.timers import time_calls

        return time_calls(timed.call, timed.timer, max(1, int(min_calls)), float(seconds), max(60.0, 4 * seconds))

    def time_alone(self, timed: TimedCall, cfg: ScenarioConfig) -> list[float]:
        """The whole budget at once (unpaired)."""
        from models.timers import time_calls

        return time_calls(timed.call, timed.timer, cfg.min_iters, cfg.min_seconds, cfg.max_seconds)

    def summarize(self, samples_s: list[float], batch: int) -> dict[str, Any]:
        from models.timers import summarize

        return summarize(samples_s, batch)


def host_batch(input_size, batch: int, seed: int, device: str):
    """The host batch timed calls copy in: fixed by the seed, so every process of a run feeds the same data.

    On CUDA it is pinned, as ``DataLoader(pin_memory=True)`` hands batches to a serving loop: a pageable batch
    is staged through a bounce buffer, and at batch 128 that copy alone (~8 ms for 77 MB) would cap every
    variant's end-to-end throughput near 4,000 img/s whatever the model does.
    """
    import torch

    c, h, w = input_size
    x = torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(seed))
    return x.pin_memory() if device == "cuda" else x


def halve_on_oom(batch: int, attempt: Callable[[int], T]) -> tuple[T, int, str | None]:
    """``attempt(batch)``; when the GPU runs out of memory, halve the batch and try again (down to 1).

    Returns (result, the batch that worked, a note for the row when it is not the one asked for)."""
    import torch

    note = None
    while True:
        try:
            return attempt(batch), batch, note
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            torch.cuda.empty_cache()
            note = f"batch {batch} ran out of GPU memory; measured at batch {batch // 2}"
            batch //= 2
