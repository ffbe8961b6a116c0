"""What ``pytest bench`` writes besides pytest-benchmark's JSON: its benchmarks as result rows, handed to the same
report writers as a sweep's (:data:`bench.report.WRITERS`), in a run folder of its own.

A suite user gets the leaderboard, the answer line, the page, the plots and ``results.jsonl`` as
``python -m bench`` writes them. The figures differ in how they were taken (every variant in the one pytest process,
unpaired: speedups are ratios of medians), and the rows say so in ``executor``.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

EXECUTOR = "pytest bench (every variant in one process, unpaired)"
# What a suite row keeps of the test's extra_info (the rest is pytest-benchmark's or the scenario's own).
ROW_FIELDS = ("top1", "top5", "agreement", "accuracy_note", "size_mb", "build_s", "first_call_ms", "manifest")


def default_run_id() -> str:
    return f"pytest-bench-{time.strftime('%Y%m%d-%H%M%S')}"


def suite_rows(
    benchmarks: list[Any], opts: Any, failures: dict[tuple[str, str], tuple[str, str]], run_id: str
) -> list[dict]:
    """One result row per timed (variant, scenario, device), one ``failed`` row per variant that did not build and
    one ``skipped`` row per recipe this machine cannot run, shaped as a sweep's rows."""
    from bench.run.process import SCHEMA_VERSION, status_row
    from bench.scenarios import get
    from models.machine import fingerprint

    info = opts.suite_info
    common = {
        "schema": SCHEMA_VERSION,
        "run_id": run_id,
        "model": info.get("model"),
        "img_size": info.get("img_size"),
        "num_classes": info.get("num_classes"),
        "checkpoint": info.get("checkpoint"),
        "checkpoint_sha256": info.get("checkpoint_sha256"),
        "data_spec": info.get("data_spec"),
        "threads": opts.threads,
        "quick": opts.quick,
        "executor": EXECUTOR,
    }
    prints: dict[str, dict[str, Any]] = {}
    rows = []
    for bench in benchmarks:
        extra = getattr(bench, "extra_info", None) or {}
        stats = getattr(bench, "stats", None)
        samples = list(getattr(stats, "data", None) or [])
        if "variant" not in extra or "scenario" not in extra or not samples:
            continue
        device, batch = str(extra["device"]), int(extra["batch_size"])
        if device not in prints:
            prints[device] = fingerprint(device, opts.threads)
        row = {
            **common,
            "variant": extra["variant"],
            "recipe": extra["recipe"],
            "device": device,
            "status": "ok",
            **{k: extra[k] for k in ROW_FIELDS if k in extra},
            "scenario": extra["scenario"],
            "batch_size": batch,
            **get(str(extra["scenario"])).summary(samples, batch),
            "samples_ms": [round(s * 1e3, 6) for s in samples],
            "timer": extra.get("timer", "perf_counter"),
            "fingerprint": prints[device],
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        rows.append(row)
    for (recipe, device), (message, code) in failures.items():
        rows.append({**common, **status_row(_job(run_id, recipe, device), "failed", message, code)})
    for skip in opts.skipped:
        rows.append({**common, **status_row(_job(run_id, skip["recipe"], skip["device"]), "skipped", skip["reason"])})
    return rows


def _job(run_id: str, recipe: str, device: str) -> Any:
    return SimpleNamespace(run_id=run_id, recipe=recipe, device=device)


def write_suite_report(benchmarks: list[Any], opts: Any, failures: dict[tuple[str, str], tuple[str, str]]) -> Any:
    """Write the suite's rows and every report into ``results/runs/<run id>/``; ``None`` when nothing was timed
    (``--benchmark-disable``, a collection-only run, every variant failed before timing)."""
    from bench.report import write_reports
    from bench.results_io import append_rows
    from bench.run.run_dir import has_content, run_dir

    out, n = run_dir(opts.run_id), 1
    while has_content(out):  # another suite took the name since this one started: never add to its rows
        n += 1
        out = run_dir(f"{opts.run_id}-{n}")
    rows = suite_rows(benchmarks, opts, failures, out.name)
    if not any(r.get("status") == "ok" for r in rows):
        return None
    out.mkdir(parents=True, exist_ok=True)
    append_rows(out / "results.jsonl", rows)
    cfg = opts.report_config().replace(run_id=out.name)
    return SimpleNamespace(run_dir=Path(out), outputs=write_reports(out, rows, cfg))
