"""Benchmarks the gate judges without a statistical test, and those it cannot compare at all.

Top-1 is one deterministic number per run (same validation split, same weights), so there is nothing to test: it
fails when it drops by more than the variant's budget in points. A scenario whose figure is one number per run
(``samples_field = None``: a serving scenario's maximum request rate, say) keeps no per-call samples, so there is no
rank test either: its ratio against the threshold, in the scenario's direction, decides alone, and the verdict says
so. Broken, skipped, new and missing benchmarks get a verdict from their status.
"""

from __future__ import annotations

import math

from bench.gate.series import TOP1, Series
from bench.gate.stats import BROKEN, IMPROVED, INCONCLUSIVE, MISSING, NEW, REGRESSION, SKIPPED, UNCHANGED, Comparison


def compare_top1(base: Series, cand: Series, budget: float) -> Comparison:
    """Top-1 fails when it drops by more than ``budget`` points; it is one number, so no test and no p-value."""
    bv, cv = base.value, cand.value
    delta = cv - bv if bv is not None and cv is not None else None
    if delta is None:
        verdict = UNCHANGED
    elif -delta > budget:
        verdict = REGRESSION
    elif delta > budget:
        verdict = IMPROVED
    else:
        verdict = UNCHANGED
    return Comparison(
        bench_id=cand.bench_id,
        device=cand.device,
        metric=TOP1,
        unit="%",
        baseline=bv,
        candidate=cv,
        ratio=cv / bv if bv and cv is not None else None,
        delta=delta,
        p_value=None,
        verdict=verdict,
        threshold=budget,
        n_baseline=base.sessions,
        n_candidate=cand.sessions,
        higher_is_better=True,
    )


def compare_value(base: Series, cand: Series, threshold: float) -> Comparison:
    """One figure a run on each side (a scenario without samples): the ratio against the threshold alone."""
    bv, cv = base.metric_value(), cand.metric_value()
    ratio = cv / bv if bv is not None and cv is not None and bv > 0 else math.nan
    higher = cand.higher_is_better
    field = cand.definition.headline if cand.definition is not None else "figure"
    note = f"one {field} per run, no samples: no p-value, the ratio against the limit alone decides"
    if bv == 0 and cv is not None:  # say, no serving rate held the bound in the baseline
        if cv == 0:
            verdict, note = UNCHANGED, f"0 on both sides; {note}"
        else:
            verdict = IMPROVED if higher else REGRESSION
            note = f"baseline 0, no ratio; {note}"
    elif math.isnan(ratio):
        verdict, note = INCONCLUSIVE, f"ratio undefined (baseline {bv}); {note}"
    elif (ratio < 1 - threshold) if higher else (ratio > 1 + threshold):
        verdict = REGRESSION
    elif (ratio > 1 + threshold) if higher else (ratio < 1 - threshold):
        verdict = IMPROVED
    else:
        verdict = UNCHANGED
    return Comparison.of(
        cand, bv, cv, ratio, p_value=None, verdict=verdict, threshold=threshold, n_baseline=base.sessions,
        n_candidate=cand.sessions, note=note,
    )  # fmt: skip


def status_comparison(base: Series | None, cand: Series | None) -> Comparison:
    """Benchmarks that cannot be compared numerically: broken, skipped, only on one side."""
    ref = cand or base
    if ref is None:
        raise ValueError("status_comparison needs at least one side")
    if cand is None:
        verdict, note = MISSING, "not in the candidate (not run this time?)"
        if base is not None and base.status != "ok":
            note += f"; baseline {base.status}: {base.reason}"
    elif base is None:
        verdict, note = NEW, "not in the baseline"
        if cand.status != "ok":
            note += f"; candidate {cand.status}: {cand.reason}"
    elif cand.status == "failed" and base.status == "ok":
        verdict, note = BROKEN, f"candidate failed: {cand.reason}"
    else:
        verdict = SKIPPED
        note = f"baseline {base.status}, candidate {cand.status}: {cand.reason or base.reason}".rstrip(": ")
    return Comparison(
        bench_id=ref.bench_id,
        device=ref.device,
        metric=ref.metric,
        unit=ref.unit,
        baseline=base.metric_value() if base is not None and base.status == "ok" else None,
        candidate=cand.metric_value() if cand is not None and cand.status == "ok" else None,
        ratio=None,
        delta=None,
        p_value=None,
        verdict=verdict,
        threshold=None,
        note=note,
        higher_is_better=ref.higher_is_better,
    )
