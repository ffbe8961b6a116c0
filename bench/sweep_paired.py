"""The sweep with every variant timed interleaved with the fp32 reference (the default of ``python -m bench``).

The fp32 reference stays warm in its own process for the whole sweep; each other variant gets its own
process and the two are timed in alternating slices (:mod:`bench.interleave`). Each variant's rows then
carry ``paired``: the median of the per-round time ratios against fp32, its 95% interval and the signed-rank
p-values (:mod:`bench.paired`), which the leaderboard uses for ``speedup_vs_fp32``. The absolute
percentiles are still every sample each variant took; only the speedup changes meaning, from a quotient of
two p50s taken minutes apart to a ratio measured at the same moments.

The fp32 row is written last, from every slice the reference took during the sweep. If the reference
process dies, the remaining variants are measured the unpaired way (one process each, one after another)
and their rows say so.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import paired
from bench.executor import LocalProcessExecutor, status_row
from bench.interleave import MeasurementServer, PairingPlan, ServerError, interleave
from bench.results_io import RESULTS_FILE, append_rows, read_rows
from bench.sweep import REFERENCE, SweepConfig, finished_recipes
from bench.worker import safe_name

# The sweep's pairing: 60 rounds of 3 s / 60 = 50 ms slices, 20 ms apart (the gate keeps PairingPlan's 20 x 150 ms,
# which its false-alarm and power figures were measured with). Per-round noise on the 2-vCPU VM stayed the same
# with shorter slices (log-ratio SD 0.07-0.11 either way), so three times the rounds cut the median CoV of the paired
# speedups across default sweeps from 4.8% / 3.7% (3 runs, 20 rounds) to 3.4% / 2.7% (5 runs, 60 rounds; latency /
# throughput) in the same 8 minutes. What is left is mostly each variant's one process.
SWEEP_PLAN = PairingPlan(rounds=60, gap_s=0.02)


def _paired_info(ref_slices: list[list[float]], slices: list[list[float]]) -> dict[str, Any] | None:
    est = paired.estimate(ref_slices, slices)
    if est is None:
        return None
    pooled = [x for chunk in ref_slices for x in chunk]
    return {"reference": REFERENCE, **est.to_dict(), "reference_p50_ms": round(float(np.median(pooled)) * 1e3, 6)}


def _measure_against(
    ref: MeasurementServer, cfg: SweepConfig, recipe: str, plan: PairingPlan, timeout_s: float
) -> list[dict[str, Any]]:
    """Build ``recipe`` in its own process, interleave it with the reference, return its rows with ``paired``."""
    job = cfg.job(recipe)
    log = cfg.run_dir / "logs" / f"{safe_name(recipe)}.log"
    server = MeasurementServer(recipe, job, log, timeout_s=timeout_s)
    try:
        slices = interleave([ref, server], job.scenarios, plan)
        rows = server.finish()
    finally:
        server.close()
    session = f"{cfg.run_id}/{recipe}"
    for row in rows:
        info = _paired_info(slices[ref.name][row["scenario"]], slices[recipe][row["scenario"]])
        if info:
            row["paired"] = info
        row["pairing"] = {"session": session, "role": "variant", "rounds": plan.rounds}
    return rows


def run_paired_sweep(
    cfg: SweepConfig,
    timeout_s: float = 1800.0,
    progress: bool = True,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    plan: PairingPlan | None = None,
) -> list[dict[str, Any]]:
    """Run every recipe not finished yet against a warm fp32 reference; returns all rows of the run."""
    from tqdm import tqdm

    from optim.recipe import parse

    plan = plan or SWEEP_PLAN
    results_path = cfg.run_dir / RESULTS_FILE
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    done = finished_recipes(results_path, cfg.device)
    todo = [r for r in cfg.recipes if r not in done and r != REFERENCE]
    fallback = LocalProcessExecutor(timeout_s=timeout_s, log_dir=cfg.run_dir / "logs")

    def record(rows: list[dict[str, Any]], start: float) -> None:
        for row in rows:
            row.setdefault("job_seconds", round(time.perf_counter() - start, 2))
        append_rows(results_path, rows)
        if on_rows:
            on_rows(rows)

    if done:
        print(f"resuming {cfg.run_id}: {len(done)} recipes already done, {len(todo)} to go", file=sys.stderr)
    start = time.perf_counter()
    if not todo:  # nothing to pair with: no warm reference needed (a finished run resumed only re-reports)
        if REFERENCE not in done:
            record(fallback.run(cfg.job(REFERENCE)), start)
        return read_rows(results_path)
    ref: MeasurementServer | None = None
    ref_note = ""
    try:
        ref = MeasurementServer(REFERENCE, cfg.job(REFERENCE), cfg.run_dir / "logs" / "fp32.log", timeout_s=timeout_s)
        ref.accuracy()  # writes the FP32 predictions every other variant's agreement is measured against
    except ServerError as exc:
        ref = None
        ref_note = f"fp32 reference failed ({exc}); measured unpaired"
        if REFERENCE not in done:
            record([status_row(cfg.job(REFERENCE), "failed", str(exc))], start)
    bar = tqdm(todo, desc="sweep", unit="variant", disable=not progress, file=sys.stderr)
    try:
        for recipe in bar:
            bar.set_description(f"building+measuring {recipe}")
            job = cfg.job(recipe)
            start = time.perf_counter()
            reason = parse(recipe).unavailable_reason(cfg.device)
            if reason:
                rows = [status_row(job, "skipped", reason)]
            elif ref is None:
                rows = fallback.run(job)
                for row in rows:
                    row["note"] = "; ".join(x for x in (row.get("note"), ref_note) if x)
            else:
                try:
                    rows = _measure_against(ref, cfg, recipe, plan, timeout_s)
                except ServerError as exc:
                    if ref.proc.poll() is None:
                        rows = [status_row(job, "failed", str(exc))]
                    else:  # the reference died, not the variant: measure it (and the rest) unpaired
                        ref, ref_note = None, f"fp32 reference process died ({exc}); measured unpaired"
                        rows = fallback.run(job)
                        for row in rows:
                            row["note"] = "; ".join(x for x in (row.get("note"), ref_note) if x)
            record(rows, start)
            if progress:
                status = rows[0].get("status") if rows else "?"
                detail = f" ({rows[0].get('error') or rows[0].get('reason')})" if status != "ok" else ""
                tqdm.write(f"  {recipe}: {status}{detail}", file=sys.stderr)
    finally:
        if ref is not None:
            start = time.perf_counter()
            try:
                rows = ref.finish()
            except ServerError as exc:
                rows = [status_row(cfg.job(REFERENCE), "failed", str(exc))]
            if REFERENCE not in done:
                if not rows:  # nothing was paired (every other variant skipped or done): time fp32 alone
                    rows = fallback.run(cfg.job(REFERENCE))
                record(rows, start)
        elif REFERENCE not in done and not any(r.get("recipe") == REFERENCE for r in read_rows(results_path)):
            record(fallback.run(cfg.job(REFERENCE)), time.perf_counter())
    return read_rows(results_path)
