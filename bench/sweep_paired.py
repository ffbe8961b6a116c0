"""The sweep with every variant timed interleaved with the fp32 reference (the default of ``python -m bench``).

The fp32 reference stays warm in its own process for the whole sweep; each other variant gets its own
process and the two are timed in alternating slices (:mod:`bench.interleave`). Each variant's rows then
carry ``paired``: the Hodges-Lehmann estimate of the per-round time ratios against fp32, its 95% interval and
the signed-rank p-values (:mod:`bench.paired`), which the leaderboard uses for ``speedup_vs_fp32``. The absolute
percentiles are still every sample each variant took; only the speedup changes meaning, from a quotient of
two p50s taken minutes apart to a ratio measured at the same moments.

Each side can be measured in several processes (:mod:`bench.replicas`): a builder builds the variant and
saves it, two or more others load the saved variant, and the rounds are spread over those, so one
process's lasting offset no longer decides a variant's figure and the build leaves no trace in the timing.

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
from bench.interleave import PairingPlan, Replicas, ServerError, first_side, interleave
from bench.replicas import CPU_REPLICAS, finish_side, spawn_side, start_side
from bench.results_io import RESULTS_FILE, append_rows, read_rows
from bench.sweep import REFERENCE, SweepConfig, finished_recipes

# The sweep's pairing: 60 rounds of 3 s / 60 = 50 ms slices, 20 ms apart (the gate keeps PairingPlan's 20 x 150 ms,
# which its false-alarm and power figures were measured with). Per-round noise on the 2-vCPU VM stayed the same
# with shorter slices (log-ratio SD 0.07-0.11 either way), so three times the rounds cut the median CoV of the paired
# speedups across default sweeps from 4.8% / 3.7% (3 runs, 20 rounds) to 3.4% / 2.7% (5 runs, 60 rounds; latency /
# throughput) in the same 8 minutes. What is left is mostly each variant's one process.
# The pause between slices is short because each side answers only once its thread pools are idle (bench.quiesce).
SWEEP_PLAN = PairingPlan(rounds=60, gap_s=0.005)

# ``--precise``: twice the rounds and four loaded processes a side (where loading does not compile). What moved a
# batch-1 speedup between default sweeps on the VM was, in about equal parts, the rounds' own noise (CoV 2.6-3.9%
# across 60-round blocks timed by the same processes) and the processes (`ort` 4.7% once each block had fresh
# ones). Six-recipe sweeps, session 8: median CoV of the batch-1 speedup 2.5% over 5 runs, against 5.2% over the
# 2 default runs alternated with them (batch 16: 2.6% against 1.6%); each run took 383-448 s against 282-293 s.
PRECISE_ROUNDS = 2 * SWEEP_PLAN.rounds
PRECISE_REPLICAS = 4


def _paired_info(
    ref_slices: list[list[float]], slices: list[list[float]], picked: list[int] | None = None
) -> dict[str, Any] | None:
    est = paired.estimate(ref_slices, slices)
    if est is None:
        return None
    pooled = [x for chunk in ref_slices for x in chunk]
    info = {"reference": REFERENCE, **est.to_dict(), "reference_p50_ms": round(float(np.median(pooled)) * 1e3, 6)}
    if picked and len(set(picked)) > 1:
        # Each process's own ratio, and whether they differ by more than the rounds' noise explains.
        groups = []
        for k in sorted(set(picked)):
            rounds = [i for i, p in enumerate(picked) if p == k]
            groups.append(paired.round_ratios([ref_slices[i] for i in rounds], [slices[i] for i in rounds]))
        info["process_time_ratios"] = [round(float(np.median(g)), 5) if g.size else None for g in groups]
        info["process_p"] = paired.processes_differ_p(groups)
    # The variant is side 1 of [reference, variant]; the flags follow the rounds round_ratios keeps.
    usable = paired.usable_rounds(ref_slices, slices)
    order = paired.order_effect(paired.round_ratios(ref_slices, slices), [first_side(i, 2) == 1 for i in usable])
    if order is not None:
        info["order_log_diff"], info["order_p"] = round(order.log_diff, 4), order.p
    return info


def _measure_against(
    ref: Replicas,
    cfg: SweepConfig,
    recipe: str,
    plan: PairingPlan,
    timeout_s: float,
    replicas: int | None,
    cpu_replicas: int = CPU_REPLICAS,
) -> list[dict[str, Any]]:
    """Build ``recipe`` in its own process(es), interleave with the reference, return its rows with ``paired``."""
    job = cfg.job(recipe)
    servers = spawn_side(cfg, job, replicas, timeout_s, cpu_replicas)
    side, note = start_side(servers, job, replicas, cpu_default=cpu_replicas)
    try:
        slices = interleave([ref, side], job.scenarios, plan)
        rows, dropped = finish_side(side)
    finally:
        side.close()
    session = f"{cfg.run_id}/{recipe}"
    for row in rows:
        scenario = row["scenario"]
        info = _paired_info(slices[ref.name][scenario], slices[recipe][scenario], side.picked.get(scenario))
        if info:
            row["paired"] = info
        row["pairing"] = {
            "session": session,
            "role": "variant",
            "rounds": plan.rounds,
            "processes": len(side.servers),
            "reference_processes": len(ref.servers),
            # False: the timed processes loaded the saved variant and its builder was not timed (bench.replicas)
            "builder_timed": side.report is None,
            "reference_builder_timed": ref.report is None,
        }
        if text := "; ".join(x for x in (row.get("note"), note, *dropped) if x):
            row["note"] = text
    return rows


def run_paired_sweep(
    cfg: SweepConfig,
    timeout_s: float = 1800.0,
    progress: bool = True,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    plan: PairingPlan | None = None,
    replicas: int | None = None,
    cpu_replicas: int = CPU_REPLICAS,
) -> list[dict[str, Any]]:
    """Run every recipe not finished yet against a warm fp32 reference; returns all rows of the run.

    ``replicas``: processes per side (None: the default in the module docstring, ``cpu_replicas`` loaded
    processes on CPU where loading the saved variant does not compile)."""
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
    ref: Replicas | None = None
    ref_note, ref_replica_note = "", None
    try:
        ref_job = cfg.job(REFERENCE)
        # reference=True: the first process writes the FP32 predictions every variant's agreement is measured against
        ref_servers = spawn_side(cfg, ref_job, replicas, timeout_s, cpu_replicas)
        ref, ref_replica_note = start_side(ref_servers, ref_job, replicas, True, cpu_replicas)
        if ref_replica_note:
            print(f"fp32 reference: {ref_replica_note}", file=sys.stderr)
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
                    rows = _measure_against(ref, cfg, recipe, plan, timeout_s, replicas, cpu_replicas)
                except ServerError as exc:
                    if ref.alive():
                        rows = [status_row(job, "failed", str(exc))]
                    else:  # the reference died, not the variant: measure it (and the rest) unpaired
                        ref.close()
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
                rows, dropped = finish_side(ref)
                for row in rows:
                    if text := "; ".join(x for x in (row.get("note"), ref_replica_note, *dropped) if x):
                        row["note"] = text
            except ServerError as exc:
                rows = [status_row(cfg.job(REFERENCE), "failed", str(exc))]
            finally:
                ref.close()
            if REFERENCE not in done:
                if not rows:  # nothing was paired (every other variant skipped or done): time fp32 alone
                    rows = fallback.run(cfg.job(REFERENCE))
                record(rows, start)
        elif REFERENCE not in done and not any(r.get("recipe") == REFERENCE for r in read_rows(results_path)):
            record(fallback.run(cfg.job(REFERENCE)), time.perf_counter())
    return read_rows(results_path)
