"""Read what the gate compares: ``results.jsonl`` from ``python -m bench`` or a pytest-benchmark JSON.

Both formats become the same thing: one :class:`Series` per benchmark (variant x scenario x device, or a
pytest-benchmark name when no ``extra_info`` says more), holding the raw per-call samples the statistical
test needs and the machine fingerprint that says whether two measurements are comparable at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.fingerprint import machine_key
from models.errors import InputError

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
    # Interleaved measurement (bench.interleave): the session both sides were timed in, and per run the
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
        from bench.paired import split

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
    """The fields of :func:`bench.fingerprint.machine_key` by name (None where the file did not record one)."""
    return dict(zip(MACHINE_FIELDS, machine_key(fp or {}), strict=True))


@dataclass
class GateInput:
    """Everything read from one baseline or candidate file (or folder of files)."""

    path: str
    fmt: str  # "results.jsonl" | "pytest-benchmark" | "mixed"
    series: dict[tuple[str, str, str], Series]
    metric_of: dict[tuple[str, str, str], str] = field(default_factory=dict)


def _pool(store: dict[tuple[str, str, str], Series], new: Series) -> None:
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


def _rows_to_series(rows: list[dict[str, Any]], source: str) -> dict[tuple[str, str, str], Series]:
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
                _pool(store, s)
            continue
        fp = row.get("fingerprint")
        run = row.get("run_id")
        if scenario in ("latency", "throughput"):
            samples = row.get("samples_ms")
            if not isinstance(samples, list) or not samples:
                raise InputError(
                    f"{source}: {variant}/{scenario} has no samples_ms; re-run python -m bench (rows of "
                    "schema 1 keep every sample)"
                )
            s = Series(
                variant,
                scenario,
                device,
                scenario,
                samples_ms=[float(x) for x in samples],
                batch_size=int(row.get("batch_size") or 1),
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
            _pool(store, s)
        top1 = row.get("top1")
        # One top-1 per variant and run (it is repeated on each scenario row of that run).
        tkey = (variant, device, str(run))
        if top1 is not None and tkey not in top1_seen:
            top1_seen.add(tkey)
            s = Series(variant, "top1", device, "top1", value=float(top1), sessions=1, source=source)
            s.add_machine(fp)
            _pool(store, s)
    return store


def _fallback_fingerprint(machine_info: dict[str, Any]) -> dict[str, Any]:
    """A pytest-benchmark file without our conftest's fingerprint: what its own machine_info can tell."""
    cpu = machine_info.get("cpu") or {}
    return {"cpu_model": cpu.get("brand_raw") or machine_info.get("processor") or None}


def _pytest_benchmark_to_series(doc: dict[str, Any], source: str) -> dict[tuple[str, str, str], Series]:
    machine_info = doc.get("machine_info") or {}
    fp = machine_info.get("optbench") if isinstance(machine_info.get("optbench"), dict) else None
    fp = fp or _fallback_fingerprint(machine_info)
    store: dict[tuple[str, str, str], Series] = {}
    for bench in doc.get("benchmarks") or []:
        if not isinstance(bench, dict):
            raise InputError(f"{source}: an entry of 'benchmarks' is not an object; is this a pytest-benchmark JSON?")
        extra = bench.get("extra_info") or {}
        name = str(bench.get("name") or bench.get("fullname") or "?")
        variant = str(extra.get("variant") or name)
        scenario = str(extra.get("scenario") or "time")
        device = str(extra.get("device") or fp.get("device") or "cpu")
        metric = scenario if scenario in ("latency", "throughput") else "time"
        stats = bench.get("stats") or {}
        data = stats.get("data")
        if not data:
            raise InputError(
                f"{source}: benchmark {name!r} has no raw samples (stats.data); re-run with --benchmark-json "
                "(it always keeps them) or --benchmark-save-data"
            )
        s = Series(
            variant,
            scenario,
            device,
            metric,
            samples_ms=[float(x) * 1e3 for x in data],  # pytest-benchmark stores seconds per call
            batch_size=int(extra.get("batch_size") or 1),
            sessions=1,
            chunks=[len(data)],
            source=source,
        )
        s.add_machine(fp)
        _pool(store, s)
        if extra.get("top1") is not None:
            t = Series(variant, "top1", device, "top1", value=float(extra["top1"]), sessions=1, source=source)
            t.add_machine(fp)
            # The same variant may have several benchmarks (latency, throughput): one top-1 each time.
            if t.key not in store:
                store[t.key] = t
    return store


def load_file(path: str | Path) -> GateInput:
    """Load one file in either format; anything else is a one-line :class:`InputError`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; pass a results.jsonl or a pytest-benchmark JSON file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not text.strip():
        raise InputError(f"{path} is empty")
    source = str(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list) and "machine_info" in doc:
        series = _pytest_benchmark_to_series(doc, source)
        fmt = "pytest-benchmark"
    elif isinstance(doc, dict) and "variant" in doc and "scenario" in doc:
        series = _rows_to_series([doc], source)
        fmt = "results.jsonl"
    elif doc is None:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(
                    f"{path}:{number} is not JSON; expected a pytest-benchmark JSON or a results.jsonl"
                ) from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{number} is not a JSON object; expected a results.jsonl row")
            rows.append(row)
        series = _rows_to_series(rows, source)
        fmt = "results.jsonl"
    else:
        raise InputError(f"{path} is neither a pytest-benchmark JSON (machine_info + benchmarks) nor a results.jsonl")
    if not series:
        raise InputError(f"{path} holds no benchmarks")
    return GateInput(str(path), fmt, series)


def merge(inputs: list[GateInput]) -> GateInput:
    """Pool several files (e.g. the rounds of an A/B run) into one input."""
    if len(inputs) == 1:
        return inputs[0]
    store: dict[tuple[str, str, str], Series] = {}
    for inp in inputs:
        for s in inp.series.values():
            _pool(store, s)
    fmts = {i.fmt for i in inputs}
    return GateInput(", ".join(i.path for i in inputs), fmts.pop() if len(fmts) == 1 else "mixed", store)


def machines_of(inp: GateInput) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in inp.series.values():
        for m in s.machines:
            if m not in out:
                out.append(m)
    return out


def load_input(path: str | Path, prefer_machines: list[dict[str, Any]] | None = None) -> GateInput:
    """A file, or a folder of baselines (``results/baselines/``): from a folder, the files recorded on the
    candidate's machine are used when there are any, so one folder can hold baselines of several machines."""
    path = Path(path)
    if not path.is_dir():
        return load_file(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".json", ".jsonl"))
    if not files:
        raise InputError(f"{path} holds no .json or .jsonl baseline files")
    loaded = [load_file(p) for p in files]
    if prefer_machines:
        same = [i for i in loaded if all(same_machine(m, c) for m in machines_of(i) for c in prefer_machines)]
        if same:
            return merge(same)
    return merge(loaded)


def same_machine(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal on every field both recorded (a pytest-benchmark file without our fingerprint knows only the CPU)."""
    return all(a.get(k) == b.get(k) for k in MACHINE_FIELDS if a.get(k) is not None and b.get(k) is not None)


def machine_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [
        f"{k}: {a.get(k)} vs {b.get(k)}"
        for k in MACHINE_FIELDS
        if a.get(k) is not None and b.get(k) is not None and a.get(k) != b.get(k)
    ]
