"""Variants timed against the fp32 reference: their sides started beside the warm reference side (two variants
at a time on CPU, sharing its slices), all interleaved, and each variant's rows given ``paired``: the
Hodges-Lehmann estimate of the per-round time ratios, its 95% interval and the signed-rank p-values
(:mod:`bench.measure.paired_stats`), which the leaderboard uses for ``speedup_vs_fp32``. The absolute percentiles
are still every sample each variant took; only the speedup changes meaning, from a quotient of two p50s taken
minutes apart to a ratio measured at the same moments.

The local executor and the cluster executor both measure this way; only where the processes run differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench.config import SWEEP_ROUNDS, Job
from bench.measure import paired_stats
from bench.measure.sequential import Looks, Rival
from bench.run.client import ServerError
from bench.run.schedule import PairingPlan, Side, interleave
from bench.run.sides import finish_side, spawn_side, start_side
from bench.run.stopping import RoundStopper, with_reference
from optim.registry import REFERENCE  # every speedup, top-1 drop and agreement is relative to it

# The sweep's pairing: 60 rounds of 3 s / 60 = 50 ms slices, 5 ms apart (the gate keeps PairingPlan's 20 x 150 ms,
# which its false-alarm and power figures were measured with). Shorter slices add no per-round noise, so more
# rounds in the same time narrow the paired speedup (docs/measurement.md). The pause between slices is short
# because each side answers only once its thread pools are idle (bench.measure.quiesce).
#
# A slice is its time share (50 ms) with at least one call, not a share of the gate's call count as well: for a
# model whose call takes longer than a slice, several calls a slice would lengthen every round without changing
# what the round ratio measures. A scenario's rounds stop, after at least 10, once the two sides together have been
# timed for 40 s (20 s a side on average; against a fast variant the fp32 side takes most of it), so a model whose
# batch of 16 takes seconds still fits a sweep: the rows record the rounds they got, and the interval widens with
# fewer of them. Small models reach neither limit.
# Variants whose rounds share the reference's slices: each round times fp32 once and each of them once, so fp32,
# often the slowest side, is timed once for two variants (docs/measurement.md).
VARIANTS_PER_GROUP = 2

SWEEP_PLAN = PairingPlan(rounds=SWEEP_ROUNDS, gap_s=0.005, min_rounds=10, calls_per_slice=1, side_seconds=20.0)

# ``--precise``: twice the rounds and four loaded processes a side (where loading does not compile), because what
# moves a batch-1 speedup between default sweeps is both the rounds' own noise and each process's lasting offset
# (docs/measurement.md).


def plan_for(job: Job) -> PairingPlan:
    return dataclasses.replace(
        SWEEP_PLAN, rounds=job.config.rounds, min_rounds=min(SWEEP_PLAN.min_rounds, job.config.rounds)
    )


def looks_for(job: Job) -> Looks:
    """Where the job's rounds may stop early: planned looks up to its rounds; one look (a fixed count) with
    ``--precise``."""
    plan = plan_for(job)
    return Looks.planned(plan.rounds, plan.min_rounds, sequential=not job.config.precise)


def paired_info(
    ref_slices: list[list[float]],
    slices: list[list[float]],
    picked: list[int] | None = None,
    looks: Looks | None = None,
    variant_first: Sequence[bool] = (),
) -> dict[str, Any] | None:
    """The ``paired`` field of a variant's row in one scenario, from both sides' slices; its interval at the
    per-look level of ``looks``, which keeps 95% whichever look the rounds stopped at. ``variant_first``: per
    round, whether the variant's slice came before the reference's (for the order check; none: no check)."""
    alpha = looks.alpha if looks else 0.05
    est = paired_stats.estimate(ref_slices, slices, alpha)
    if est is None:
        return None
    pooled = [x for chunk in ref_slices for x in chunk]
    info = {"reference": REFERENCE, **est.to_dict(), "reference_p50_ms": round(float(np.median(pooled)) * 1e3, 6)}
    if looks is not None and len(looks.rounds) > 1:
        info["looks"], info["look_alpha"] = list(looks.rounds), looks.alpha
    if picked and len(set(picked)) > 1:
        # Each process's own ratio, and whether they differ by more than the rounds' noise explains.
        groups = []
        for k in sorted(set(picked)):
            rounds = [i for i, p in enumerate(picked) if p == k]
            groups.append(paired_stats.round_ratios([ref_slices[i] for i in rounds], [slices[i] for i in rounds]))
        info["process_time_ratios"] = [round(float(np.median(g)), 5) if g.size else None for g in groups]
        info["process_p"] = paired_stats.processes_differ_p(groups)
    usable = paired_stats.usable_rounds(ref_slices, slices)
    ratios = paired_stats.round_ratios(ref_slices, slices)
    info["round_ratios"] = [round(float(r), 5) for r in ratios]  # for re-analysis (bench.measure.stopping_sim)
    order = None
    if len(variant_first) >= len(slices):
        order = paired_stats.order_effect(ratios, [variant_first[i] for i in usable])
    if order is not None:
        info["order_log_diff"], info["order_p"] = round(order.log_diff, 4), order.p
    return info


def start_reference(job: Job) -> tuple[Side, str | None]:
    """The warm fp32 side every variant is paired with; its builder writes the FP32 predictions first."""
    cfg = job.config
    servers = spawn_side(job, cfg.replicas, cfg.timeout_s, cfg.cpu_replicas)
    return start_side(servers, job, cfg.replicas, reference=True, cpu_default=cfg.cpu_replicas)


def group_size(jobs: Sequence[Job]) -> int:
    """How many variants share the reference's rounds: :data:`VARIANTS_PER_GROUP` on CPU; one on CUDA, where every
    process holds its own CUDA context and activations on cards as small as a T4's, and with ``--precise``, whose
    users want the tightest figure: sharing read a higher per-round noise on the Zen 4 VM (docs/measurement.md)."""
    if any(job.device == "cuda" or job.config.precise for job in jobs):
        return 1
    return VARIANTS_PER_GROUP


def measure_group(
    ref: Side, jobs: Sequence[Job], rivals: Mapping[str, list[Rival]] | None = None
) -> list[list[dict[str, Any]] | ServerError]:
    """Build each job's variant in its own process(es), one after another, then time them all interleaved with the
    reference; per job, its rows or the error that ended it.

    Each round times the reference once and every variant once, so the reference's slices serve every variant of
    the group while each ratio still compares slices of the same round (drift cancels as with one variant). Each
    variant's rounds stop on their own (``rivals``: what the variants measured before showed, per scenario; a
    variant of the group that stopped first becomes a rival of the others). A variant that fails is that variant's
    failure; the reference failing raises.
    """
    cfg = jobs[0].config
    plan, looks = plan_for(jobs[0]), looks_for(jobs[0])
    shared = with_reference(rivals or {}, [sc.name for sc in jobs[0].scenarios], ref.top1)
    results: list[list[dict[str, Any]] | ServerError] = []
    started: list[tuple[int, Side, str | None]] = []
    try:
        for index, job in enumerate(jobs):  # built one at a time: build times and first calls stay each its own
            try:
                servers = spawn_side(job, cfg.replicas, cfg.timeout_s, cfg.cpu_replicas)
                side, note = start_side(servers, job, cfg.replicas, cpu_default=cfg.cpu_replicas)
            except ServerError as exc:
                results.append(exc)
                continue
            results.append([])
            started.append((index, side, note))
        if not started:
            return results
        stoppers = {
            side.name: RoundStopper(looks, (ref.name, side.name), shared, side.top1, not cfg.load.random_init)
            for _, side, _ in started
        }
        sides = [ref, *(side for _, side, _ in started)]
        slices = interleave(sides, jobs[0].scenarios, plan, stoppers, reference=0)
        for index, side, note in started:
            if side.failure is not None:
                results[index] = side.failure
                continue
            try:
                rows, dropped = finish_side(side)
            except ServerError as exc:
                results[index] = exc
                continue
            others = [other.name for _, other, _ in started if other is not side]
            results[index] = _paired_rows(rows, ref, side, jobs[index], slices, stoppers[side.name], [note, *dropped])
            for row in results[index]:
                row["pairing"]["timed_with"] = others  # variants whose slices shared the reference's rounds
    finally:
        for _, side, _ in started:
            side.close()
    return results


def _paired_rows(
    rows: list[dict[str, Any]],
    ref: Side,
    side: Side,
    job: Job,
    slices: Mapping[str, Mapping[str, list[list[float]]]],
    stopper: RoundStopper,
    notes: Sequence[str | None],
) -> list[dict[str, Any]]:
    for row in rows:
        scenario = row["scenario"]
        # The variant's rounds are the first of the scenario's (it may have stopped before the reference did).
        order = zip(side.positions.get(scenario, []), ref.positions.get(scenario, []), strict=False)
        before = [v < r for v, r in order]
        info = paired_info(
            slices[ref.name][scenario],
            slices[side.name][scenario],
            side.picked.get(scenario),
            stopper.looks_for(scenario),
            before,
        )
        if info:
            row["paired"] = info
        row.update(stopper.fields(scenario))
        row["pairing"] = {
            "session": f"{job.config.run_id}/{job.recipe}",
            "role": "variant",
            "rounds": plan_for(job).rounds,
            "processes": len(side.servers),
            "reference_processes": len(ref.servers),
            # False: the timed processes loaded the saved variant and its builder was not timed (bench.run.sides)
            "builder_timed": side.report is None,
            "reference_builder_timed": ref.report is None,
        }
        if text := "; ".join(x for x in (row.get("note"), *notes) if x):
            row["note"] = text
    return rows


def measure_against(ref: Side, job: Job, rivals: Mapping[str, list[Rival]] | None = None) -> list[dict[str, Any]]:
    """One variant timed against the reference (a group of one); raises the variant's failure."""
    (result,) = measure_group(ref, [job], rivals)
    if isinstance(result, ServerError):
        raise result
    return result


def measure_alone(job: Job) -> list[dict[str, Any]]:
    """The unpaired way: one process builds the variant and times each scenario for its whole budget."""
    cfg = job.config
    servers = spawn_side(job, 1, cfg.timeout_s)
    side, _ = start_side(servers, job, 1)
    try:
        for scenario in job.scenarios:
            side.first.measure(scenario)
        rows, _ = finish_side(side)
    finally:
        side.close()
    return rows


def finish_reference(ref: Side, note: str | None) -> list[dict[str, Any]]:
    """The fp32 rows from every slice the reference took during the run."""
    try:
        rows, dropped = finish_side(ref)
    finally:
        ref.close()
    for row in rows:
        if text := "; ".join(x for x in (row.get("note"), note, *dropped) if x):
            row["note"] = text
    return rows
