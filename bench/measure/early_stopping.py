"""Whether a run's latencies show, with a stated confidence, that a percentile stays under a bound.

After MLPerf LoadGen's early-stopping rule (mlcommons/inference, ``loadgen/early_stopping.cc`` for the binomial
search and ``loadgen/results.cc``, ``PerformanceSummary::EarlyStopping``, for how each scenario applies it). A run of
``n`` queries of which ``t`` went over the bound is a draw from a binomial distribution: if the true fraction over
the bound were ``1 - percentile`` (the percentile sitting exactly on the bound), the chance of seeing ``t`` or fewer
over it would be ``P(Binomial(n, 1 - percentile) <= t)``. When that chance is below ``1 - confidence`` the run
rejects "the percentile is at or above the bound": the percentile is under it, with that confidence.

``min_passing_queries(t)`` is LoadGen's ``h(t)``: the fewest queries under the bound that, beside ``t`` over it, make
the chance small enough. The Server scenario's verdict is ``n >= h(t) + t``. We add one floor to it: at least
``h(1) + 1`` queries (662 for p99 at 99% confidence, LoadGen's minimum for its percentile estimate and its
MultiStream ``min_query_count``), so that a passing run has room for one stray slow query and always comes with
an estimate. The estimate is the smallest bound the same run would have passed: the ``(t* + 1)``-th largest
latency, ``t*`` being the most queries over the bound that ``n`` queries can carry (``h(t*) + t* <= n``). Hence
VALID exactly when the run is long enough and that estimate is within the bound.

Queries that never completed (the run ended first) count as over the bound: leaving them out would let an
overloaded run pass on the queries it happened to finish.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_PERCENTILE = 0.99
DEFAULT_CONFIDENCE = 0.99


def _check_levels(percentile: float, confidence: float) -> None:
    if not 0.0 < percentile < 1.0:
        raise ValueError(f"percentile must be a fraction in (0, 1), got {percentile!r} (0.99 for p99)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be a fraction in (0, 1), got {confidence!r}")


def chance_of_at_most(over: int, under: int, percentile: float) -> float:
    """P(at most ``over`` of ``over + under`` queries exceed the bound) if the percentile sat exactly on it.

    The regularized incomplete beta ``I_p(under, over + 1)`` is that binomial tail (the form LoadGen uses too);
    scipy evaluates it without summing ``over`` terms, which matters for long runs with thousands over the bound.
    """
    from scipy.special import betainc

    return float(betainc(under, over + 1, percentile))


@functools.lru_cache(maxsize=4096)
def min_passing_queries(
    over: int, percentile: float = DEFAULT_PERCENTILE, confidence: float = DEFAULT_CONFIDENCE
) -> int:
    """LoadGen's ``h(t)``: the fewest queries under the bound that let ``over`` queries over it still pass.

    Cached: a rate search asks for the same few values over and over.
    """
    _check_levels(percentile, confidence)
    if over < 0:
        raise ValueError(f"over must be >= 0, got {over}")
    alpha = 1.0 - confidence
    lo = 1
    hi = max(2, math.ceil(math.log(alpha) / math.log(percentile)) + math.ceil(over * percentile / (1 - percentile)))
    while chance_of_at_most(over, hi, percentile) >= alpha:  # grow until it passes, then bisect
        lo, hi = hi, hi * 2
    while lo < hi:  # smallest ``under`` with chance < alpha; the chance falls as ``under`` grows
        mid = (lo + hi) // 2
        if chance_of_at_most(over, mid, percentile) < alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo


def min_queries(percentile: float = DEFAULT_PERCENTILE, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """Shortest run that can be VALID: ``h(1) + 1`` (662 for p99 at 99% confidence, 6636 for p99.9)."""
    return min_passing_queries(1, percentile, confidence) + 1


def max_over_bound(queries: int, percentile: float = DEFAULT_PERCENTILE, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """``t*``: the most queries over the bound that a run of ``queries`` can carry and still pass; -1 if none.

    A load generator can stop a run as soon as more than this many went over: it can no longer pass.
    """
    _check_levels(percentile, confidence)
    if queries < min_passing_queries(0, percentile, confidence):
        return -1
    lo, hi = 0, queries  # h(t) + t grows with t: bisect for the last t that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if min_passing_queries(mid, percentile, confidence) + mid <= queries:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class Verdict:
    """One run judged against a percentile bound; ``estimate_s`` is None when the run is too short for one or the
    estimate falls on a query that never completed."""

    valid: bool
    reason: str
    queries: int  # completed + not completed
    not_completed: int
    over_bound: int  # completed over the bound + not completed
    max_over_bound: int  # t*: the most over the bound this many queries can carry
    needed: int  # h(over_bound) + over_bound: the run length this many over the bound would have needed
    min_queries: int
    estimate_s: float | None
    bound_s: float
    percentile: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    latencies_s: Sequence[float] | np.ndarray,
    bound_s: float,
    percentile: float = DEFAULT_PERCENTILE,
    confidence: float = DEFAULT_CONFIDENCE,
    not_completed: int = 0,
) -> Verdict:
    """Judge completed latencies (seconds) and ``not_completed`` queries against ``bound_s`` at ``percentile``.

    Over the bound means strictly greater, as in LoadGen (a latency equal to the bound passes).
    """
    _check_levels(percentile, confidence)
    if not bound_s > 0:
        raise ValueError(f"bound_s must be > 0, got {bound_s!r}")
    if not_completed < 0:
        raise ValueError(f"not_completed must be >= 0, got {not_completed}")
    lat = np.asarray(latencies_s, dtype=np.float64).ravel()
    if np.isnan(lat).any():
        raise ValueError("latencies contain NaN: pass queries that never completed as not_completed")
    n = int(lat.size) + not_completed
    over = int(np.count_nonzero(lat > bound_s)) + not_completed
    t_star = max_over_bound(n, percentile, confidence)
    floor = min_queries(percentile, confidence)
    needed = min_passing_queries(over, percentile, confidence) + over
    estimate = _estimate(lat, not_completed, t_star)
    valid = n >= floor and over <= t_star
    reason = _reason(valid, n, floor, over, t_star, needed, not_completed, percentile, bound_s)
    return Verdict(
        valid=valid,
        reason=reason,
        queries=n,
        not_completed=not_completed,
        over_bound=over,
        max_over_bound=t_star,
        needed=needed,
        min_queries=floor,
        estimate_s=estimate,
        bound_s=float(bound_s),
        percentile=float(percentile),
        confidence=float(confidence),
    )


def _estimate(lat: np.ndarray, not_completed: int, t_star: int) -> float | None:
    """The ``(t* + 1)``-th largest latency, the queries that never completed ranking above every completed one."""
    if t_star < 0:
        return None
    rank = t_star + 1 - not_completed  # rank among the completed ones
    if rank <= 0 or rank > lat.size:
        return None
    return float(np.partition(lat, lat.size - rank)[lat.size - rank])


def _reason(
    valid: bool,
    n: int,
    floor: int,
    over: int,
    t_star: int,
    needed: int,
    not_completed: int,
    percentile: float,
    bound_s: float,
) -> str:
    """One line for a report: what passed, or the first thing that failed."""
    level = f"p{percentile * 100:g}"
    if valid:
        return f"{over} of {n} queries over {bound_s * 1e3:g} ms (up to {t_star} allowed): {level} under the bound"
    if n < floor:
        return f"only {n} queries; {level} needs at least {floor} to be judged"
    text = f"{over} of {n} queries over {bound_s * 1e3:g} ms, at most {t_star} allowed (would need {needed} queries)"
    if not_completed:
        text += f"; {not_completed} not completed within the time limit count as over"
    return text
