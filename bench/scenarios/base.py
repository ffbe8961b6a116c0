"""What every scenario is (:class:`Scenario`): the one interface everything downstream of a measurement reads.

Which row field is its figure and which way is better (the gate, the answer), which leaderboard columns it fills
(the leaderboard, the page, the trackers), how its paired ratio becomes a speedup, what it adds to the answer line
and the notes, how pareto.png draws it, and which options rebuild it (``--resume``, grid files). Scenarios never
name each other: the report iterates over the run's scenarios and asks each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.scenarios.config import Column, ScenarioConfig


def num(value: Any) -> float:
    """A row or leaderboard value as a float (NaN when missing or not a number)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class StageConflict(ValueError):
    """A staged scenario asked to measure what contradicts rows the run already has (another serving bound on
    ``--resume``): bad input, refused before anything runs."""


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
    speedup_header: str = ""  # the speedup column's header on the page
    # The row field holding raw per-call times (ms) the gate compares; None: the scenario's figure is one value per
    # row (``headline``), compared by its ratio alone.
    samples_field: str | None = "samples_ms"
    # Row fields that say what the figure means (the serving bound, say): figures measured under different values
    # answer different questions, so the gate refuses to compare them.
    conditions: tuple[str, ...] = ()
    ranks: bool = False  # the answer ranks variants by this scenario's speedup (exactly one registered scenario does)
    label: str = ""  # how notes name where a figure was taken ("batch 1")
    panel: str | None = None  # its panel of pareto.png: "front" (figure against top-1), "bars", or none
    axis_label: str = ""  # that panel's axis
    slower_words: str = ""  # leaderboard note for a variant worse than fp32 here: "<words> (0.52x)"
    console_columns: tuple[str, ...] = ()  # the leaderboard columns the console table shows for it

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

    def figure_from_samples(self, samples_ms: list[float], batch: int) -> float:
        """The scenario's figure from raw per-call times (the gate's headline number): the median call by default."""
        import numpy as np

        return float(np.median(samples_ms)) if samples_ms else math.nan

    def speedup_from_time_ratio(self, ratio: float) -> float:
        """A paired time ratio (variant over fp32, per call) as a speedup."""
        return 1.0 / ratio if ratio > 0 else math.nan

    def worse_than_reference(self, rec: Mapping[str, Any]) -> float | None:
        """The variant's speedup here when it is below 1 (worse than fp32), else None."""
        speed = num(rec.get(self.speedup_column)) if self.speedup_column else math.nan
        return speed if speed < 1.0 else None

    def slower_note(self, rec: Mapping[str, Any]) -> str | None:
        """The leaderboard note for a variant worse than fp32 in this scenario."""
        speed = self.worse_than_reference(rec)
        return None if speed is None else f"{self.slower_words} ({speed:.2f}x)"

    def slower_explanation(self, rec: Mapping[str, Any]) -> str | None:
        """The same, as explanations.md words it."""
        return self.slower_note(rec)

    def answer_text(self, rec: Mapping[str, Any], ranked_first: bool) -> str:
        """What the answer line says about the chosen variant in this scenario (empty: nothing)."""
        return ""

    def caveats(self, rows: list[Mapping[str, Any]]) -> list[str | tuple[str, str]]:
        """What this scenario's figures in ``rows`` rest on that a reader should know before deciding: a sentence,
        or (a short form for the answer line, the sentence)."""
        return []

    # In the measurement process: ``prepare(prep, cfg) -> state`` once the variant is built, ``time_alone(state,
    # cfg)`` for one unpaired measurement, ``time_slice(state, seconds, min_calls)`` for one paired slice, and
    # ``row(prep, cfg, state, chunks)`` for the scenario's part of the result row (:mod:`bench.run.server`).
    staged: bool = False  # measured after the sweep, on the variants its stage picks (bench.run.stages)

    def prepare(self, prep: Any, cfg: ScenarioConfig) -> Any:
        raise NotImplementedError

    def time_alone(self, state: Any, cfg: ScenarioConfig) -> Any:
        raise NotImplementedError

    def row(self, prep: Any, cfg: ScenarioConfig, state: Any, chunks: list[Any]) -> dict[str, Any]:
        raise NotImplementedError

    def figures(self, df: Any, rows: list[Mapping[str, Any]], run_dir: Path) -> dict[str, Path]:
        """Files of the scenario's own (a serving curve, say), written with the other reports."""
        return {}
