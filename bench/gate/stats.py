"""The decision rule of the gate: a change counts only if it is both large and statistically significant.

Timing (a scenario whose samples are per-call times, or a plain pytest-benchmark time): the ratio of the
candidate's figure to the baseline's must pass the threshold in the scenario's bad direction AND a one-sided
Mann-Whitney U test on the raw per-call samples must reject "no slower" at ``alpha`` (default 0.001). Why this
test: per-call timings are skewed with long right tails (GC, preemption, a neighbour on the runner), so a t-test
on means is driven by outliers; the rank test needs no distribution, and one-sided at 0.001 equals the two-sided
p < 0.002 that asv (the one common tool that tests statistically) uses. The ratio condition guards against the
opposite failure: with hundreds of samples a 0.5% shift is "significant" but not worth failing a pull request.

Samples inside one process are not independent (a process whose threads landed on SMT siblings is slow
for all its samples), and runs of the same code in fresh processes differ far more than the rank test on
pooled samples expects, even on an idle machine (docs/gate.md). So when both sides pool >= 2 runs (A/B
rounds), the shift must also stand out from the run-to-run spread: one-sided Welch t on the log of each
run's median at ``run_alpha`` (0.01). With one run a side that spread cannot be estimated: a change must then
also pass ``ONE_RUN_SPREAD`` (25%) to count, and CI gates in A/B mode, not against a stored run.

Interleaved A/B (``python -m bench.gate --ab``, :mod:`bench.run.schedule`): both sides were timed in
alternating slices in the same job, so round r of the baseline and round r of the candidate saw the
same machine. Then the test is a one-sided Wilcoxon signed-rank test on the per-round log ratios at
``paired_alpha`` (0.01: the rounds, not the calls, are the independent units, and there are only 20 of
them), and the ratio is its Hodges-Lehmann estimate (:mod:`bench.measure.paired_stats`; docs/gate.md's false-alarm
and power figures were measured with the median round ratio, which it replaced: the decision rests on the test).

Benchmarks with one number a side (top-1, a scenario without samples) are judged in :mod:`bench.gate.values`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.gate.series import Series

# With one run on a side the run-to-run spread cannot be estimated, and fresh processes of the same code differ by
# more than the threshold (docs/gate.md, "Measured quality"). Such a pair is called a regression only past this
# change; below it the verdict is inconclusive and says why.
ONE_RUN_SPREAD = 0.25
DEFAULT_ALPHA = 0.001
DEFAULT_RUN_ALPHA = 0.01
# The paired test's level. Its units are rounds (20 by default), too few for p < 0.001 to catch a 10% slowdown
# reliably through the rounds' own scatter; at 0.01 the ratio threshold still keeps A/A false alarms near zero
# (bench.gate.sim; docs/gate.md, docs/measurement.md).
DEFAULT_PAIRED_ALPHA = 0.01
TEST_NAME = "one-sided Mann-Whitney U on raw per-call samples"
RUN_TEST_NAME = "one-sided Welch t on log run medians (when both sides have >= 2 runs)"
PAIRED_TEST_NAME = "one-sided Wilcoxon signed-rank on per-round log ratios (interleaved A/B)"

REGRESSION = "REGRESSION"
IMPROVED = "improved"
UNCHANGED = "unchanged"
INCONCLUSIVE = "inconclusive"  # past the threshold, but not significant: noise until more samples say otherwise
BROKEN = "BROKEN"  # ran in the baseline, fails in the candidate
SKIPPED = "skipped"
MISSING = "missing"  # in the baseline only (not run this time)
NEW = "new"  # in the candidate only

FAILING = (REGRESSION, BROKEN)


@dataclass
class Comparison:
    """One benchmark, both sides, and the verdict with its evidence."""

    bench_id: str
    device: str
    metric: str
    unit: str
    baseline: float | None
    candidate: float | None
    ratio: float | None  # candidate / baseline (for top-1: None, see delta)
    delta: float | None  # candidate - baseline in the metric's unit
    p_value: float | None  # one-sided p for the direction the change went
    verdict: str
    threshold: float | None  # fraction for timing, points for top-1
    n_baseline: int = 0
    n_candidate: int = 0
    note: str = ""
    p_runs: float | None = None  # run-level p (Welch t on log run medians) when both sides pooled >= 2 runs
    higher_is_better: bool = False  # the scenario's direction: which way the limit points

    @property
    def failing(self) -> bool:
        return self.verdict in FAILING

    @classmethod
    def of(cls, cand: Any, bv: float | None, cv: float | None, ratio: float | None, **rest: Any) -> Comparison:
        """The comparison of ``cand``'s benchmark (its id, device, metric, unit and direction) at these values."""
        delta = (cv - bv) if bv is not None and cv is not None else None
        return cls(
            bench_id=cand.bench_id, device=cand.device, metric=cand.metric, unit=cand.unit, baseline=bv, candidate=cv,
            ratio=ratio, delta=delta, higher_is_better=cand.higher_is_better, **rest,
        )  # fmt: skip


def mann_whitney_one_sided(worse: np.ndarray, better: np.ndarray) -> float:
    """p-value of "``worse`` is stochastically greater than ``better``" (exact for small samples without ties)."""
    from scipy.stats import mannwhitneyu

    if len(worse) == 0 or len(better) == 0:
        return math.nan
    return float(mannwhitneyu(worse, better, alternative="greater", method="auto").pvalue)


def min_attainable_p(n1: int, n2: int) -> float:
    """The smallest one-sided p an exact rank test can give: 1 / C(n1 + n2, n1). Below alpha or the gate is blind."""
    if not n1 or not n2:
        return 1.0
    log_comb = math.lgamma(n1 + n2 + 1) - math.lgamma(n1 + 1) - math.lgamma(n2 + 1)
    return math.exp(-log_comb)


def min_samples_for(alpha: float) -> int:
    """Samples per side (equal sizes) needed before complete separation can reach ``alpha``."""
    n = 1
    while min_attainable_p(n, n) >= alpha:
        n += 1
    return n


def run_level_p(worse_runs: list[list[float]], better_runs: list[list[float]]) -> float | None:
    """p of "runs of ``worse`` are slower" from Welch's t on the log of each run's median; None below 2 runs a side.

    Samples inside one process share its fate (thread placement, memory layout, a neighbour), so the rank test
    on pooled samples sees process-to-process drift as a "significant" shift. Run medians are independent
    draws of that drift; this test asks whether the shift stands out from it.
    """
    if len(worse_runs) < 2 or len(better_runs) < 2:
        return None
    from scipy.stats import ttest_ind

    a = np.log([np.median(r) for r in worse_runs])
    b = np.log([np.median(r) for r in better_runs])
    if a.std() == 0 and b.std() == 0:  # identical runs (synthetic data): the sign of the shift decides
        return 0.0 if a.mean() > b.mean() else 1.0
    return float(ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)


def compare_timing(
    base: Series,
    cand: Series,
    threshold: float,
    alpha: float = DEFAULT_ALPHA,
    run_alpha: float = DEFAULT_RUN_ALPHA,
    paired_alpha: float = DEFAULT_PAIRED_ALPHA,
) -> Comparison:
    """Ratio of the headline metric plus the rank test on per-call times (the test runs on time per call whatever
    the scenario's figure: a figure from per-call times, images per second say, is a monotone function of them,
    so the ranks and the p-value are the same; the scenario's direction picks which side is worse).

    When both sides pool >= 2 runs (A/B rounds), the shift must also be significant at the run level
    (:func:`run_level_p` < ``run_alpha``): an intersection-union test, so its level is the larger of the two."""
    paired = compare_paired(base, cand, threshold, paired_alpha)
    if paired is not None:
        return paired
    b = np.asarray(base.samples_ms, dtype=np.float64)
    c = np.asarray(cand.samples_ms, dtype=np.float64)
    bv, cv = base.metric_value(), cand.metric_value()
    ratio = cv / bv if bv and cv is not None and bv > 0 else math.nan
    p_slower = mann_whitney_one_sided(c, b)  # candidate takes longer per call
    p_faster = mann_whitney_one_sided(b, c)
    higher = cand.higher_is_better
    worse_ratio = ratio < 1 - threshold if higher else ratio > 1 + threshold
    better_ratio = ratio > 1 + threshold if higher else ratio < 1 - threshold
    base_runs, cand_runs = base.runs(), cand.runs()
    notes = []
    p_runs = None
    if worse_ratio:
        p = p_slower
        p_runs = run_level_p(cand_runs, base_runs)
        significant = p < alpha and (p_runs is None or p_runs < run_alpha)
        verdict = REGRESSION if significant else INCONCLUSIVE
    elif better_ratio:
        p = p_faster
        p_runs = run_level_p(base_runs, cand_runs)
        significant = p < alpha and (p_runs is None or p_runs < run_alpha)
        verdict = IMPROVED if significant else INCONCLUSIVE
    else:
        p = p_slower if (ratio < 1) == higher else p_faster
        verdict = UNCHANGED
    verdict = _one_run_guard(verdict, ratio, threshold, higher, p_runs, notes)
    if p_runs is not None:
        ok = "met" if p_runs < run_alpha else "not met"
        notes.append(f"runs {len(base_runs)} vs {len(cand_runs)}: run-level p {p_runs:.2g} (< {run_alpha:g} {ok})")
    floor = min_attainable_p(len(b), len(c))
    if floor >= alpha:
        notes.append(
            f"{len(b)} vs {len(c)} samples cannot reach p < {alpha:g} (best possible {floor:.2g}); "
            f"collect >= {min_samples_for(alpha)} per side"
        )
    if base.batch_size != cand.batch_size:
        notes.append(f"batch {base.batch_size} vs {cand.batch_size}")
    return _timing_comparison(base, cand, bv, cv, ratio, p, verdict, threshold, notes, p_runs)


def _one_run_guard(
    verdict: str, ratio: float, threshold: float, higher: bool, p_runs: float | None, notes: list[str]
) -> str:
    """With one run on a side (no run-level test), a change counts only past ``ONE_RUN_SPREAD``; says so when not."""
    if (
        p_runs is not None
        or verdict not in (REGRESSION, IMPROVED)
        or _past(ratio, max(threshold, ONE_RUN_SPREAD), higher)
    ):
        return verdict
    notes.append(
        f"one run on a side: a change under {ONE_RUN_SPREAD:.0%} cannot be told from run-to-run drift "
        "(pool runs, or use --ab)"
    )
    return INCONCLUSIVE


def _past(ratio: float, threshold: float, higher_is_better: bool) -> bool:
    """Whether ``ratio`` moved by more than ``threshold`` either way (a rate's ratio is judged as its inverse)."""
    change = 1 / ratio if higher_is_better and ratio > 0 else ratio
    return change > 1 + threshold or change < 1 / (1 + threshold)


def compare_paired(
    base: Series, cand: Series, threshold: float, alpha: float = DEFAULT_PAIRED_ALPHA
) -> Comparison | None:
    """The interleaved decision (module docstring), or None when the two sides were not timed in one session."""
    from bench.measure import paired_stats as paired

    if not base.pairing or base.pairing != cand.pairing:
        return None
    base_rounds, cand_rounds = base.rounds(), cand.rounds()
    if base_rounds is None or cand_rounds is None:
        return None
    est = paired.estimate(base_rounds, cand_rounds)
    if est is None:
        return None
    bv = base.metric_value()
    higher = cand.higher_is_better
    # The metric ratio: time per call where lower is better, its inverse where higher is (a rate). The two values
    # shown are each side's own pooled figure; the ratio is the paired one, so it may differ from their quotient.
    ratio = 1.0 / est.ratio if higher else est.ratio
    cv = cand.metric_value()
    slower, faster = est.ratio > 1 + threshold, est.ratio < 1 - threshold
    if slower:
        p = est.p_slower
        verdict = REGRESSION if p < alpha else INCONCLUSIVE
    elif faster:
        p = est.p_faster
        verdict = IMPROVED if p < alpha else INCONCLUSIVE
    else:
        p = est.p_slower if est.ratio >= 1 else est.p_faster
        verdict = UNCHANGED
    lo, hi = (1 / est.ci_high, 1 / est.ci_low) if higher else (est.ci_low, est.ci_high)
    notes = [
        f"interleaved: ratio = Hodges-Lehmann estimate of {est.rounds} round ratios (95% CI {lo:.3f}-{hi:.3f}), "
        f"{len(base.runs())} vs {len(cand.runs())} processes"
    ]
    if 2.0**-est.rounds >= alpha:
        notes.append(f"{est.rounds} rounds cannot reach p < {alpha:g}; use more --rounds")
    return _timing_comparison(base, cand, bv, cv, ratio, p, verdict, threshold, notes)


def _timing_comparison(
    base: Series,
    cand: Series,
    bv: float | None,
    cv: float | None,
    ratio: float,
    p: float,
    verdict: str,
    threshold: float,
    notes: list[str],
    p_runs: float | None = None,
) -> Comparison:
    return Comparison.of(
        cand, bv, cv, ratio, p_value=p, verdict=verdict, threshold=threshold, n_baseline=len(base.samples_ms),
        n_candidate=len(cand.samples_ms), note="; ".join(notes), p_runs=p_runs,
    )  # fmt: skip
