"""Read what the gate compares: ``results.jsonl`` from ``python -m bench`` or a pytest-benchmark JSON.

Both formats become the same thing: one :class:`Series` per benchmark (variant x scenario x device, or a
pytest-benchmark name when no ``extra_info`` says more), holding the raw per-call samples the statistical
test needs and the machine fingerprint that says whether two measurements are comparable at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gate.readers import pytest_benchmark_to_series, rows_to_series
from bench.gate.series import MACHINE_FIELDS, Series, pool
from data.errors import InputError


@dataclass
class GateInput:
    """Everything read from one baseline or candidate file (or folder of files)."""

    path: str
    fmt: str  # "results.jsonl" | "pytest-benchmark" | "mixed"
    series: dict[tuple[str, str, str], Series]


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
        series = pytest_benchmark_to_series(doc, source)
        fmt = "pytest-benchmark"
    elif isinstance(doc, dict) and "variant" in doc and "scenario" in doc:
        series = rows_to_series([doc], source)
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
        series = rows_to_series(rows, source)
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
            pool(store, s)
    fmts = {i.fmt for i in inputs}
    return GateInput(", ".join(i.path for i in inputs), fmts.pop() if len(fmts) == 1 else "mixed", store)


def machines_of(inp: GateInput) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in inp.series.values():
        for m in s.machines:
            if m not in out:
                out.append(m)
    return out


def _looks_like_benchmarks(path: Path) -> bool:
    """Whether a file in a baseline folder is one the gate reads: a folder also holds other JSON (a run's
    ``run_config.json``, recorded round ratios), which is skipped; a benchmark file that is damaged is not, so its
    error is still reported."""
    try:
        with path.open() as f:
            first = next((line for line in f if line.strip()), "")
        doc = json.loads(first) if path.suffix == ".jsonl" else json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return path.name == "results.jsonl" or path.suffix == ".jsonl"
    if not isinstance(doc, dict):
        return path.suffix == ".jsonl"
    return ("benchmarks" in doc and "machine_info" in doc) or ("variant" in doc and "scenario" in doc)


def load_input(path: str | Path, prefer_machines: list[dict[str, Any]] | None = None) -> GateInput:
    """A file, or a folder of baselines (``results/baselines/``): from a folder, the files recorded on the
    candidate's machine are used when there are any, so one folder can hold baselines of several machines."""
    path = Path(path)
    if not path.is_dir():
        return load_file(path)
    candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".json", ".jsonl"))
    files = [p for p in candidates if _looks_like_benchmarks(p)]
    if not files:
        others = f" (not benchmark files: {', '.join(p.name for p in candidates[:3])})" if candidates else ""
        raise InputError(f"{path} holds no results.jsonl or pytest-benchmark JSON baseline files{others}")
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
