"""A :class:`Series` (the samples of one benchmark), and reading the two formats the gate compares into them:
``results.jsonl`` rows of ``python -m bench`` and pytest-benchmark JSON of ``pytest bench``. Every field read is
checked for its shape, so a damaged or hand-edited file is one line of bad input, never a traceback."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data.errors import InputError
from models.machine import machine_key

MACHINE_FIELDS = ("cpu_model", "gpu_name", "threads", "torch", "onnxruntime", "tensorrt")

# How each metric is judged: the direction users care about and the unit shown in the report.
METRICS: dict[str, tuple[bool, str]] = {
    "latency": (False, "ms"),  # median ms per call at batch 1: lower is better
    "throughput": (True, "img/s"),  # images per second from the median batch time: higher is better
    "time": (False, "ms"),  # a pytest-benchmark without optbench extra_info: median ms per call
    "top1": (True, "%"),  # validation top-1: higher is better, judged against a budget in points
}


@dataclass
class Series:
    """One benchmark in one file: pooled raw samples (ms per call) or one accuracy number."""

    variant: str
    scenario: str
    device: str
    metric: str
    samples_ms: list[float] = field(default_factory=list)
    batch_size: int = 1
    value: float | None = None  # top-1 (points); timing values derive from the samples
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

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.variant, self.scenario, self.device)

    @property
    def bench_id(self) -> str:
        """The name thresholds are matched against: ``variant/scenario`` (e.g. ``ptq(ort)/latency``)."""
        return f"{self.variant}/{self.scenario}"

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][0]

    @property
    def unit(self) -> str:
        return METRICS[self.metric][1]

    def metric_value(self) -> float | None:
        """The headline number: median latency (ms), images/s at the median batch time, or top-1."""
        if self.metric == "top1":
            return self.value
        if not self.samples_ms:
            return None
        median = float(np.median(self.samples_ms))
        if self.metric == "throughput":
            return self.batch_size * 1e3 / median if median > 0 else float("nan")
        return median

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
    if old.pairing != new.pairing or bool(old.slice_lengths) != bool(new.slice_lengths):
        old.pairing, old.slice_lengths = None, []  # runs from different sessions cannot be paired round by round
    else:
        old.slice_lengths.extend(new.slice_lengths)
    old.samples_ms.extend(new.samples_ms)
    old.chunks.extend(new.chunks)
    old.sessions += new.sessions
    if new.value is not None:
        # Top-1 of several runs of the same variant: their mean (it is deterministic up to kernel choice).
        old.value = new.value if old.value is None else (old.value * (old.sessions - 1) + new.value) / old.sessions
    for m in new.machines:
        if m not in old.machines:
            old.machines.append(m)


def _object(value: Any, what: str, source: str) -> dict[str, Any]:
    """``value`` when it is a JSON object (or absent: empty); anything else is bad input naming the field."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{source}: {what} must be a JSON object, got {type(value).__name__}")
    return value


def _numbers(value: Any, what: str, source: str) -> list[float]:
    """A non-empty list of finite, non-negative numbers (timings), or bad input naming the field."""
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 for x in value)
    )
    if not ok:
        shown = repr(value)[:60]
        raise InputError(f"{source}: {what} must be a non-empty list of timings in numbers, got {shown}")
    return [float(x) for x in value]


def _number(value: Any, what: str, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{source}: {what} must be a number, got {repr(value)[:60]}")
    return float(value)


def rows_to_series(rows: list[dict[str, Any]], source: str) -> dict[tuple[str, str, str], Series]:
    store: dict[tuple[str, str, str], Series] = {}
    top1_seen: set[tuple[str, str, str]] = set()
    for number, row in enumerate(rows, 1):
        variant, scenario, device = row.get("variant"), row.get("scenario"), row.get("device")
        if not variant or not scenario or not device:
            raise InputError(
                f"{source}: row {number} lacks variant/scenario/device; is it a results.jsonl of python -m bench?"
            )
        variant, scenario, device = str(variant), str(scenario), str(device)
        status = str(row.get("status", "ok"))
        if status != "ok":
            reason = str(row.get("error") or row.get("reason") or status)
            for scen in ("latency", "throughput", "top1"):
                s = Series(variant, scen, device, scen, status=status, reason=reason, source=source)
                pool(store, s)
            continue
        fp = _object(row.get("fingerprint"), f"row {number} fingerprint", source) or None
        run = row.get("run_id")
        if scenario in ("latency", "throughput"):
            samples = row.get("samples_ms")
            if samples is None or samples == []:
                raise InputError(
                    f"{source}: {variant}/{scenario} has no samples_ms; re-run python -m bench (rows of "
                    "schema 1 keep every sample)"
                )
            samples = _numbers(samples, f"row {number} samples_ms", source)
            s = Series(
                variant,
                scenario,
                device,
                scenario,
                samples_ms=[float(x) for x in samples],
                batch_size=int(_number(row.get("batch_size"), f"row {number} batch_size", source) or 1),
                sessions=1,
                chunks=[len(samples)],
                source=source,
            )
            lengths = row.get("slice_lengths")
            pairing = row.get("pairing") if isinstance(row.get("pairing"), dict) else {}
            if pairing.get("session") and isinstance(lengths, list) and sum(lengths) == len(samples):
                s.pairing = str(pairing["session"])
                s.slice_lengths = [[int(n) for n in lengths]]
            s.add_machine(fp)
            pool(store, s)
        top1 = _number(row.get("top1"), f"row {number} top1", source)
        # One top-1 per variant and run (it is repeated on each scenario row of that run).
        tkey = (variant, device, str(run))
        if top1 is not None and tkey not in top1_seen:
            top1_seen.add(tkey)
            s = Series(variant, "top1", device, "top1", value=float(top1), sessions=1, source=source)
            s.add_machine(fp)
            pool(store, s)
    return store


def _fallback_fingerprint(machine_info: dict[str, Any]) -> dict[str, Any]:
    """A pytest-benchmark file without our conftest's fingerprint: what its own machine_info can tell."""
    cpu = machine_info.get("cpu") or {}
    return {"cpu_model": cpu.get("brand_raw") or machine_info.get("processor") or None}


def pytest_benchmark_to_series(doc: dict[str, Any], source: str) -> dict[tuple[str, str, str], Series]:
    machine_info = _object(doc.get("machine_info"), "machine_info", source)
    fp = machine_info.get("optbench") if isinstance(machine_info.get("optbench"), dict) else None
    fp = fp or _fallback_fingerprint(machine_info)
    store: dict[tuple[str, str, str], Series] = {}
    benchmarks = doc.get("benchmarks") or []
    if not isinstance(benchmarks, list):
        raise InputError(f"{source}: 'benchmarks' must be a list; is this a pytest-benchmark JSON?")
    for bench in benchmarks:
        if not isinstance(bench, dict):
            raise InputError(f"{source}: an entry of 'benchmarks' is not an object; is this a pytest-benchmark JSON?")
        extra = _object(bench.get("extra_info"), "extra_info", source)
        name = str(bench.get("name") or bench.get("fullname") or "?")
        variant = str(extra.get("variant") or name)
        scenario = str(extra.get("scenario") or "time")
        device = str(extra.get("device") or fp.get("device") or "cpu")
        metric = scenario if scenario in ("latency", "throughput") else "time"
        stats = _object(bench.get("stats"), "stats", source)
        data = stats.get("data")
        if data is None or data == []:
            raise InputError(
                f"{source}: benchmark {name!r} has no raw samples (stats.data); re-run with --benchmark-json "
                "(it always keeps them) or --benchmark-save-data"
            )
        s = Series(
            variant,
            scenario,
            device,
            metric,
            samples_ms=[x * 1e3 for x in _numbers(data, f"{name} stats.data", source)],  # seconds per call
            batch_size=int(_number(extra.get("batch_size"), f"{name} extra_info.batch_size", source) or 1),
            sessions=1,
            chunks=[len(data)],
            source=source,
        )
        s.add_machine(fp)
        pool(store, s)
        top1 = _number(extra.get("top1"), f"{name} extra_info.top1", source)
        if top1 is not None:
            t = Series(variant, "top1", device, "top1", value=top1, sessions=1, source=source)
            t.add_machine(fp)
            # The same variant may have several benchmarks (latency, throughput): one top-1 each time.
            if t.key not in store:
                store[t.key] = t
    return store
