"""Statistics of interleaved measurements: one time ratio per round, and what the rounds say together.

Round r holds one slice of each side, taken back to back (a few hundred milliseconds apart). The ratio of
their medians cancels whatever the machine was doing in that moment; the rounds are then independent
draws of the ratio. The test is a one-sided Wilcoxon signed-rank test on the log ratios (symmetric noise
around the true ratio is all it assumes; the exact test reaches p = 2^-n, so 20 rounds allow p < 1e-6 and
10 rounds p < 0.001), and the estimate is the one that goes with it: the Hodges-Lehmann estimate of the log
ratios (the median of all pairwise means of rounds), with its distribution-free 95% interval from the
signed-rank distribution.

Why not the median round ratio (the earlier estimate): it uses only the middle round's value, and on the same
raw rounds it scattered from sweep to sweep as much or more, while the two estimates agree on the centre
(docs/measurement.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_ROUNDS = 5


def split(samples: Sequence[float], lengths: Sequence[int]) -> list[list[float]]:
    """Pooled samples back into their slices; raises if the lengths do not add up."""
    if sum(lengths) != len(samples):
        raise ValueError(f"slice lengths add up to {sum(lengths)}, but there are {len(samples)} samples")
    out, start = [], 0
    for n in lengths:
        out.append(list(samples[start : start + n]))
        start += n
    return out


def usable_rounds(reference: Sequence[Sequence[float]], other: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the rounds that give a ratio: both slices hold samples (rounds paired by index)."""
    n = min(len(reference), len(other))
    return [i for i in range(n) if len(other[i]) and len(reference[i]) and np.median(reference[i]) > 0]


def round_ratios(reference: Sequence[Sequence[float]], other: Sequence[Sequence[float]]) -> np.ndarray:
    """``other / reference`` per usable round, from the median time per call of each slice."""
    ratios = [float(np.median(other[i]) / np.median(reference[i])) for i in usable_rounds(reference, other)]
    return np.asarray(ratios, dtype=np.float64)


EXACT_SIGNED_RANK_MAX = 200  # above this many rounds the signed-rank distribution is taken as normal


def _signed_rank_lower_count(n: int, alpha: float) -> int:
    """Largest ``k`` with P(W+ <= k) <= alpha/2 under the null, W+ being the signed-rank statistic of ``n``."""
    total = n * (n + 1) // 2
    if n > EXACT_SIGNED_RANK_MAX:
        from scipy.stats import norm

        mean, sd = total / 2, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        return max(-1, math.floor(mean + norm.ppf(alpha / 2) * sd))
    probs = np.zeros(total + 1)
    probs[0] = 1.0
    for rank in range(1, n + 1):  # each rank joins W+ with probability 1/2
        probs[rank:] = (probs[rank:] + probs[:-rank]) / 2
        probs[:rank] /= 2
    below = np.nonzero(np.cumsum(probs) <= alpha / 2)[0]
    return int(below[-1]) if below.size else -1


def hodges_lehmann(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """(estimate, low, high): the median of the Walsh averages (all pairwise means, each value with itself
    included) and its distribution-free ``1 - alpha`` interval, their k-th smallest and largest, k from the
    signed-rank distribution (the whole range when the rounds are too few for the level)."""
    x = np.asarray(values, dtype=np.float64)
    i, j = np.triu_indices(x.size)
    walsh = np.sort((x[i] + x[j]) / 2)
    # W+ <= c rejects at alpha/2, so the bound is the (c+1)-th smallest Walsh average: index c from 0
    k = min(max(_signed_rank_lower_count(x.size, alpha), 0), (walsh.size - 1) // 2)
    return float(np.median(walsh)), float(walsh[k]), float(walsh[walsh.size - 1 - k])


def signed_rank_p(log_ratios: np.ndarray, alternative: str) -> float:
    """One-sided Wilcoxon signed-rank p of ``log_ratios`` > 0 (``greater``) or < 0 (``less``)."""
    if log_ratios.size == 0:
        return math.nan
    if np.all(log_ratios == 0):
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(log_ratios, alternative=alternative, zero_method="zsplit").pvalue)


@dataclass(frozen=True)
class PairedEstimate:
    """``ratio`` is other/reference time per call: above 1 the other side is slower."""

    ratio: float
    ci_low: float
    ci_high: float
    rounds: int
    p_slower: float  # other takes longer than reference
    p_faster: float
    round_sd: float  # spread of the log round ratios: how noisy a single round was

    def to_dict(self) -> dict[str, float | int]:
        return {
            "time_ratio": round(self.ratio, 5),
            "ci95": [round(self.ci_low, 5), round(self.ci_high, 5)],
            "rounds": self.rounds,
            "p_slower": self.p_slower,
            "p_faster": self.p_faster,
            "round_log_sd": round(self.round_sd, 5),
        }


def estimate(
    reference: Sequence[Sequence[float]], other: Sequence[Sequence[float]], alpha: float = 0.05
) -> PairedEstimate | None:
    """The paired estimate with its ``1 - alpha`` interval, or None with fewer than :data:`MIN_ROUNDS` usable
    rounds. A run that may stop early asks for its per-look level (:mod:`bench.measure.sequential`)."""
    ratios = round_ratios(reference, other)
    if ratios.size < MIN_ROUNDS:
        return None
    logs = np.log(ratios)
    centre, lo, hi = hodges_lehmann(logs, alpha)
    return PairedEstimate(
        ratio=math.exp(centre),
        ci_low=math.exp(lo),
        ci_high=math.exp(hi),
        rounds=int(ratios.size),
        p_slower=signed_rank_p(logs, "greater"),
        p_faster=signed_rank_p(logs, "less"),
        round_sd=float(logs.std(ddof=1)),
    )


def processes_differ_p(groups: Sequence[np.ndarray]) -> float:
    """p-value that the round ratios of several processes of one variant come from one distribution.

    Kruskal-Wallis on the log ratios (Mann-Whitney for two processes): a small p says the processes
    settled at different speeds, beyond what the round-to-round noise explains. NaN with fewer than three
    rounds in a process.
    """
    logs = [np.log(np.asarray(g, dtype=np.float64)) for g in groups]
    if len(logs) < 2 or any(g.size < 3 for g in logs):
        return math.nan
    if all(np.all(g == logs[0][0]) for g in logs):
        return 1.0
    from scipy.stats import kruskal

    return float(kruskal(*logs).pvalue)


@dataclass(frozen=True)
class OrderEffect:
    """How much the round ratio depends on which side went first: ``log_diff`` = median log ratio of the rounds
    where the variant went second, minus that of the rounds where it went first; ``p`` from Mann-Whitney."""

    log_diff: float
    p: float


def order_effect(ratios: np.ndarray, variant_first: Sequence[bool]) -> OrderEffect | None:
    """Whether one side disturbs the other: the signature is a ratio that depends on the order within the round.

    Interleaving rotates the order so that neither side always runs right after the other, and a fair pair
    reads the same either way. A thread pool left spinning (:mod:`bench.measure.quiesce`) runs into the other
    side's next slice: the rounds split in two by order, and the median falls wherever the mix puts it. None
    with fewer than three rounds in either order.
    """
    logs = np.log(np.asarray(ratios, dtype=np.float64))
    first = np.asarray(variant_first, dtype=bool)
    if logs.size != first.size:
        raise ValueError(f"{logs.size} ratios but {first.size} order flags")
    a, b = logs[~first], logs[first]
    if a.size < 3 or b.size < 3:
        return None
    diff = float(np.median(a) - np.median(b))
    if np.all(logs == logs[0]):
        return OrderEffect(0.0, 1.0)
    from scipy.stats import mannwhitneyu

    return OrderEffect(diff, float(mannwhitneyu(a, b, alternative="two-sided").pvalue))
