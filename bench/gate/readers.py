"""Reading the two formats the gate compares into :class:`Series`: ``results.jsonl`` rows of ``python -m bench`` and
pytest-benchmark JSON of ``pytest bench``. Every field read is checked for its shape, so a damaged or hand-edited
file is one line of bad input, never a traceback.

A row's scenario says where its figure is: raw per-call times in the scenario's ``samples_field``, or (a scenario
without one) a single number in its ``headline`` field. A scenario this optbench does not know is listed as
skipped rather than guessed at.
"""

from __future__ import annotations

import math
from typing import Any

from bench.gate.series import ANY, TIME, TOP1, Series, pool, scenario_named
from bench.suite_report import EXECUTOR as SUITE_EXECUTOR
from data.errors import InputError

Store = dict[tuple[str, str, str], Series]


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


def _sha(value: Any, what: str, source: str) -> list[str]:
    """The checkpoint's sha256 as a one-item list (empty when not recorded)."""
    if value is None:
        return []
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{source}: {what} must be a sha256 string, got {repr(value)[:60]}")
    return [value.strip().lower()]


# How per-call samples were taken, a condition of every timed benchmark: every variant in one pytest process,
# unpaired, reads differently from processes of their own with no code change (docs/gate.md), so the two never meet
# in one comparison.
TIMED = "timed"
IN_PYTEST = "in the pytest process"
IN_OWN_PROCESSES = "in processes of their own"


def _scenario_series(row: dict[str, Any], number: int, source: str, key: tuple[str, str, str]) -> Series:
    """The benchmark an ``ok`` row measured: its samples, its one figure, or skipped (a scenario unknown here)."""
    variant, scenario, device = key
    scen = scenario_named(scenario)
    if scen is None:
        return Series(*key, scenario, status="skipped", reason=f"scenario {scenario!r} is unknown to this optbench")
    batch = int(_number(row.get("batch_size"), f"row {number} batch_size", source) or 1)
    if scen.samples_field is None:
        value = _number(row.get(scen.headline), f"row {number} {scen.headline}", source)
        if value is None:
            raise InputError(f"{source}: {variant}/{scenario} has no {scen.headline}, the figure the gate compares")
        return Series(*key, scenario, value=value, batch_size=batch, sessions=1, source=source)
    samples = row.get(scen.samples_field)
    if samples is None or samples == []:
        raise InputError(
            f"{source}: {variant}/{scenario} has no {scen.samples_field}; re-run python -m bench (rows of "
            "schema 1 keep every sample)"
        )
    samples = _numbers(samples, f"row {number} {scen.samples_field}", source)
    s = Series(*key, scenario, samples_ms=samples, batch_size=batch, sessions=1, chunks=[len(samples)], source=source)
    lengths = row.get("slice_lengths")
    pairing = row.get("pairing") if isinstance(row.get("pairing"), dict) else {}
    if pairing.get("session") and isinstance(lengths, list) and sum(lengths) == len(samples):
        s.pairing = str(pairing["session"])
        s.slice_lengths = [[int(n) for n in lengths]]
    return s


# What a figure was measured on, besides the weights and the machine: a timing at 64 px is not a regression of one
# at 32 px, nor a top-1 on 33 images an improvement on one over 30 others.
TIMING_INPUTS = ("img_size",)
TOP1_INPUTS = ("img_size", "data_spec", "val_images")


def measured_on(fields: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The named input conditions a row (or a benchmark's extra_info) records; absent ones are left out."""
    return {name: fields[name] for name in names if fields.get(name) is not None}


def rows_to_series(rows: list[dict[str, Any]], source: str) -> Store:
    store: Store = {}
    top1_seen: set[tuple[str, str, str]] = set()
    for number, row in enumerate(rows, 1):
        variant, scenario, device = row.get("variant"), row.get("scenario"), row.get("device")
        if not variant or not scenario or not device:
            raise InputError(
                f"{source}: row {number} lacks variant/scenario/device; is it a results.jsonl of python -m bench?"
            )
        variant, scenario, device = str(variant), str(scenario), str(device)
        status = row.get("status", "ok")
        if not isinstance(status, str):
            raise InputError(f"{source}: row {number} status is {status!r}, not a word such as 'ok' or 'failed'")
        if status != "ok":
            reason = str(row.get("error") or row.get("reason") or status)
            pool(store, Series(variant, ANY, device, ANY, status=status, reason=reason, source=source))
            continue
        fp = _object(row.get("fingerprint"), f"row {number} fingerprint", source) or None
        sha = _sha(row.get("checkpoint_sha256"), f"row {number} checkpoint_sha256", source)
        s = _scenario_series(row, number, source, (variant, scenario, device))
        s.conditions = measured_on(row, TIMING_INPUTS)
        if (definition := s.definition) is not None:
            s.conditions.update({name: row.get(name) for name in definition.conditions})
        if s.samples_ms:
            s.conditions[TIMED] = IN_PYTEST if row.get("executor") == SUITE_EXECUTOR else IN_OWN_PROCESSES
        s.add_machine(fp)
        s.checkpoints = list(sha)
        pool(store, s)
        top1 = _number(row.get("top1"), f"row {number} top1", source)
        # One top-1 per variant and run (it is repeated on each scenario row of that run).
        tkey = (variant, device, str(row.get("run_id")))
        if top1 is not None and tkey not in top1_seen:
            top1_seen.add(tkey)
            t = Series(variant, TOP1, device, TOP1, value=float(top1), sessions=1, source=source, checkpoints=list(sha))
            t.conditions = measured_on(row, TOP1_INPUTS)
            t.add_machine(fp)
            pool(store, t)
    return store


def _fallback_fingerprint(machine_info: dict[str, Any]) -> dict[str, Any]:
    """A pytest-benchmark file without our conftest's fingerprint: what its own machine_info can tell."""
    cpu = machine_info.get("cpu") or {}
    return {"cpu_model": cpu.get("brand_raw") or machine_info.get("processor") or None}


def pytest_benchmark_to_series(doc: dict[str, Any], source: str) -> Store:
    machine_info = _object(doc.get("machine_info"), "machine_info", source)
    fp = machine_info.get("optbench") if isinstance(machine_info.get("optbench"), dict) else None
    fp = fp or _fallback_fingerprint(machine_info)
    suite = _object(doc.get("optbench"), "optbench", source)
    sha = _sha(suite.get("checkpoint_sha256"), "optbench.checkpoint_sha256", source)
    store: Store = {}
    benchmarks = doc.get("benchmarks") or []
    if not isinstance(benchmarks, list):
        raise InputError(f"{source}: 'benchmarks' must be a list; is this a pytest-benchmark JSON?")
    for bench in benchmarks:
        if not isinstance(bench, dict):
            raise InputError(f"{source}: an entry of 'benchmarks' is not an object; is this a pytest-benchmark JSON?")
        extra = _object(bench.get("extra_info"), "extra_info", source)
        name = str(bench.get("name") or bench.get("fullname") or "?")
        variant = str(extra.get("variant") or name)
        scenario = str(extra.get("scenario") or TIME)
        device = str(extra.get("device") or fp.get("device") or "cpu")
        scen = scenario_named(scenario)
        # pytest-benchmark keeps seconds per call: a scenario timed per call reads them; anything else is plain time.
        metric = scenario if scen is not None and scen.samples_field else TIME
        stats = _object(bench.get("stats"), "stats", source)
        data = stats.get("data")
        if data is None or data == []:
            raise InputError(
                f"{source}: benchmark {name!r} has no raw samples (stats.data); re-run with --benchmark-json "
                "(it always keeps them) or --benchmark-save-data"
            )
        samples = [x * 1e3 for x in _numbers(data, f"{name} stats.data", source)]
        batch = int(_number(extra.get("batch_size"), f"{name} extra_info.batch_size", source) or 1)
        s = Series(variant, scenario, device, metric, samples_ms=samples, batch_size=batch, sessions=1)
        s.conditions = {**measured_on(extra, TIMING_INPUTS), TIMED: IN_PYTEST}
        s.chunks, s.source, s.checkpoints = [len(samples)], source, list(sha)
        s.add_machine(fp)
        pool(store, s)
        top1 = _number(extra.get("top1"), f"{name} extra_info.top1", source)
        if top1 is not None:
            t = Series(variant, TOP1, device, TOP1, value=top1, sessions=1, source=source, checkpoints=list(sha))
            t.conditions = measured_on(extra, TOP1_INPUTS)
            t.add_machine(fp)
            # The same variant may have a benchmark per scenario: one top-1 each time.
            if t.key not in store:
                store[t.key] = t
    return store
