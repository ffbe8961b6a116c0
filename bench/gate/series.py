"""A :class:`Series`: the samples (or the one figure) of one benchmark in one file, and how runs of it pool.

What a benchmark is judged by comes from its scenario (:mod:`bench.scenarios`): which way is better, the unit,
and how raw per-call times become its figure. The gate names no scenario; it keeps two metrics of its own:
``top1`` (accuracy, one number judged against a budget in points) and ``time`` (a pytest-benchmark benchmark
that is no optbench scenario: median ms per call). The readers of the two file formats are in
:mod:`bench.gate.readers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.scenarios import Scenario, all_scenarios
from data.errors import InputError
from models.machine import machine_key

MACHINE_FIELDS = ("cpu_model", "gpu_name", "threads", "torch", "onnxruntime", "tensorrt")

TOP1 = "top1"  # validation top-1: higher is better, judged against a budget in points
TIME = "time"  # a pytest-benchmark benchmark without an optbench scenario: median ms per call, lower is better
OWN_METRICS: dict[str, tuple[bool, str]] = {TIME: (False, "ms"), TOP1: (True, "%")}
# A failed or skipped row of python -m bench stands for every benchmark of its variant on its device; it is kept
# under this scenario until the other side says which benchmarks those are (bench.gate.match).
ANY = "*"

# How a benchmark is judged: a rank test on samples, its one figure against the threshold, or top-1's budget.
SAMPLES, VALUE, BUDGET = "samples", "value", "budget"


def scenario_named(name: str) -> Scenario | None:
    """The registered scenario of that name, or None (the gate's own metrics, or one this optbench lacks)."""
    return next((s for s in all_scenarios() if s.name == name), None)


def metric_order() -> list[str]:
    """How a variant's benchmarks are listed: its scenarios in registration order, then the gate's own metrics."""
    return [s.name for s in all_scenarios()] + list(OWN_METRICS)


@dataclass
class Series:
    """One benchmark in one file: pooled raw samples (ms per call) or one number (top-1, a one-value scenario)."""

    variant: str
    scenario: str
    device: str
    metric: str  # the scenario's name, or TOP1 / TIME
    samples_ms: list[float] = field(default_factory=list)
    batch_size: int = 1
    value: float | None = None  # top-1 (points) or a one-value scenario's figure; timing values derive from samples
    status: str = "ok"
    reason: str = ""
    sessions: int = 0  # how many runs (processes) the samples were pooled from
    chunks: list[int] = field(default_factory=list)  # samples per run, in order (the simulation resamples runs)
    machines: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    # Interleaved measurement (bench.run.schedule): the session both sides were timed in, and per run the
    # length of each slice, so round r of every run can be put beside round r of the other side.
    pairing: str | None = None
    slice_lengths: list[list[int]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)  # sha256 of the weights measured, where rows record it
    conditions: dict[str, Any] = field(default_factory=dict)  # the scenario's conditions (Scenario.conditions)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.variant, self.scenario, self.device)

    @property
    def bench_id(self) -> str:
        """The name thresholds are matched against: ``variant/scenario`` (e.g. ``ptq(ort)/latency``)."""
        return f"{self.variant}/{self.scenario}"

    @property
    def definition(self) -> Scenario | None:
        """The scenario this benchmark's figure comes from (None for the gate's own metrics)."""
        return None if self.metric in OWN_METRICS else scenario_named(self.metric)

    @property
    def judged_by(self) -> str:
        """SAMPLES (ratio and a test), VALUE (one figure a run: the ratio alone) or BUDGET (top-1)."""
        if self.metric == TOP1:
            return BUDGET
        scen = self.definition
        return VALUE if scen is not None and scen.samples_field is None else SAMPLES

    @property
    def higher_is_better(self) -> bool:
        scen = self.definition
        return scen.higher_is_better if scen is not None else OWN_METRICS.get(self.metric, (False, ""))[0]

    @property
    def unit(self) -> str:
        scen = self.definition
        return scen.unit if scen is not None else OWN_METRICS.get(self.metric, (False, ""))[1]

    def metric_value(self) -> float | None:
        """The headline number: the scenario's figure from the samples (or its one value), the median ms of a
        plain timing, or top-1."""
        if self.judged_by != SAMPLES:
            return self.value
        if not self.samples_ms:
            return None
        scen = self.definition
        if scen is None:
            return float(np.median(self.samples_ms))
        return scen.figure_from_samples(self.samples_ms, self.batch_size)

    def as_status(self, scenario: str) -> Series:
        """This failed/skipped marker (scenario ANY) as the status of one benchmark of its variant."""
        return Series(
            self.variant, scenario, self.device, scenario, status=self.status, reason=self.reason, source=self.source
        )

    def runs(self) -> list[list[float]]:
        """The samples split back into the runs they were pooled from."""
        out, start = [], 0
        for n in self.chunks or [len(self.samples_ms)]:
            out.append(self.samples_ms[start : start + n])
            start += n
        return out

    def rounds(self) -> list[list[float]] | None:
        """Round r of every run pooled (the side's slices that were timed in the same moment), or None when
        the samples were not taken interleaved or the runs disagree on the number of rounds."""
        if not self.pairing or not self.slice_lengths or len(self.slice_lengths) != len(self.runs()):
            return None
        from bench.measure.paired_stats import split

        per_run = [split(run, lengths) for run, lengths in zip(self.runs(), self.slice_lengths, strict=True)]
        counts = {len(r) for r in per_run}
        if len(counts) != 1:
            return None
        return [[x for run in per_run for x in run[i]] for i in range(counts.pop())]

    def add_machine(self, fp: dict[str, Any] | None) -> None:
        desc = machine_desc(fp)
        if desc not in self.machines:
            self.machines.append(desc)


def machine_desc(fp: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of :func:`models.machine.machine_key` by name (None where the file did not record one)."""
    return dict(zip(MACHINE_FIELDS, machine_key(fp or {}), strict=True))


def conditions_text(conditions: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in conditions.items()) or "none"


def pool(store: dict[tuple[str, str, str], Series], new: Series) -> None:
    """Samples of the same benchmark from several runs (A/B rounds, appended sweeps) are pooled."""
    old = store.get(new.key)
    if old is None:
        store[new.key] = new
        return
    if new.status != "ok":
        if old.status == "ok" and not old.samples_ms and old.value is None:
            store[new.key] = new
        return
    if old.status != "ok":
        store[new.key] = new
        return
    if old.batch_size != new.batch_size and new.samples_ms:
        raise InputError(
            f"{new.source}: {new.bench_id} on {new.device} was measured at batch {old.batch_size} and "
            f"{new.batch_size}; compare runs with one batch size"
        )
    if old.conditions != new.conditions:
        raise InputError(
            f"{new.source}: {new.bench_id} on {new.device} was measured under {conditions_text(old.conditions)} "
            f"and {conditions_text(new.conditions)}; compare runs measured alike"
        )
    if old.pairing != new.pairing or bool(old.slice_lengths) != bool(new.slice_lengths):
        old.pairing, old.slice_lengths = None, []  # runs from different sessions cannot be paired round by round
    else:
        old.slice_lengths.extend(new.slice_lengths)
    old.samples_ms.extend(new.samples_ms)
    old.chunks.extend(new.chunks)
    old.sessions += new.sessions
    if new.value is not None:
        # Top-1 (or a one-value figure) of several runs of the same variant: their mean.
        old.value = new.value if old.value is None else (old.value * (old.sessions - 1) + new.value) / old.sessions
    for m in new.machines:
        if m not in old.machines:
            old.machines.append(m)
    old.checkpoints = old.checkpoints + [c for c in new.checkpoints if c not in old.checkpoints]
