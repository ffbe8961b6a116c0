"""One open-loop trial at a given rate, judged: a full trial (MLPerf's early-stopping rule, at least 662 queries for
p99) or a cheaper screening trial, as the rate search asks. See docs/serving.md.

A screening trial is judged by its own percentile (every query completed, the percentile within the bound): cheap
enough to bracket a slow model's rate, never a claim. Only a full trial makes one; the search re-measures its answer
with one (``find_max_rate(confirm=...)``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bench.measure import early_stopping
from bench.measure.open_loop import Instance, poisson_arrivals, run_open_loop

# What a trial's verdict rests on (RatePoint.code).
VALID = "valid"
OVER_BOUND = "over_bound"  # enough queries, too many over the bound
NOT_COMPLETED = "not_completed"  # the time cap ended the run with queries left: counted over the bound
CAP_TOO_SHORT = "cap_too_short"  # the schedule of the queries the rule needs does not fit in the time cap
SCREEN = "screen"  # a screening trial that passed: a bracket for the search, never a claim


@dataclass
class RatePoint:
    """One trial: the scheduled rate, its verdict and why, and the run's summary (``LoadResult.summary``)."""

    rate: float
    valid: bool
    code: str
    reason: str
    summary: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    seed: int | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trial_queries(
    rate: float, min_duration_s: float, percentile: float, confidence: float, screen_queries: int | None = None
) -> int:
    """Queries in a trial at ``rate``: enough for the rule to say VALID (a screen: ``screen_queries``), and at least
    ``min_duration_s`` of them."""
    floor = screen_queries or early_stopping.min_queries(percentile, confidence)
    return max(floor, math.ceil(rate * min_duration_s))


def _check_measure_args(
    bound_s: float, min_duration_s: float, time_cap_s: float, percentile: float, confidence: float
) -> None:
    if not bound_s > 0:
        raise ValueError(f"bound_s must be > 0, got {bound_s!r}")
    if not (min_duration_s >= 0 and time_cap_s > 0):
        raise ValueError("min_duration_s must be >= 0 and time_cap_s > 0")
    early_stopping.min_queries(percentile, confidence)  # checks the levels now, not in the first trial


def open_loop_measure(
    instances: Sequence[Instance],
    max_batch: int,
    max_delay_s: float,
    bound_s: float,
    *,
    percentile: float = early_stopping.DEFAULT_PERCENTILE,
    confidence: float = early_stopping.DEFAULT_CONFIDENCE,
    min_duration_s: float = 1.0,
    time_cap_s: float = 10.0,
    seed: int = 0,
    stop_early: bool = True,
    call_timeout_s: float | None = None,
    screen_queries: int | None = None,
) -> Callable[[float], RatePoint]:
    """A ``measure(rate)`` for :func:`find_max_rate` that runs one open-loop trial per call (``screen_queries``: a
    screening trial of at least that many queries, see the module docstring).

    Each call draws a fresh schedule (seed ``seed``, ``seed + 1``, ...: reproducible, yet a re-measured rate is
    not the same draw). A trial is capped at ``time_cap_s``; when the last query the rule needs is scheduled less
    than ``bound_s`` before the cap the trial is INVALID without running (``cap_too_short``). ``stop_early``
    ends an overloaded trial as soon as it has more queries over the bound than a passing run may have.
    """
    _check_measure_args(bound_s, min_duration_s, time_cap_s, percentile, confidence)
    calls = [0]

    def measure(rate: float) -> RatePoint:
        started = time.perf_counter()
        trial_seed = seed + calls[0]
        calls[0] += 1
        count = trial_queries(rate, min_duration_s, percentile, confidence, screen_queries)
        arrivals = poisson_arrivals(rate, count, trial_seed)
        if arrivals[-1] + bound_s > time_cap_s:  # the last query's deadline must fall inside the cap
            reason = (
                f"{count} queries at {rate:.4g}/s are scheduled over {arrivals[-1]:.3g} s, too close to the"
                f" {time_cap_s:g} s time cap for all of them to complete within the bound"
            )
            return RatePoint(rate, False, CAP_TOO_SHORT, reason, seed=trial_seed)
        allowed = (
            math.floor((1 - percentile) * count)
            if screen_queries
            else early_stopping.max_over_bound(count, percentile, confidence)
        )
        over = (bound_s, allowed) if stop_early else None
        result = run_open_loop(
            instances, arrivals, max_batch, max_delay_s, time_cap_s, stop_when_over=over, call_timeout_s=call_timeout_s
        )
        missing = int((~result.completed).sum())
        if screen_queries:
            return _screened(rate, result, bound_s, percentile, trial_seed, time.perf_counter() - started)
        verdict = early_stopping.evaluate(result.latencies_s(), bound_s, percentile, confidence, missing)
        code, reason = _code(verdict, result.stop_reason)
        elapsed = time.perf_counter() - started
        return RatePoint(
            float(rate), verdict.valid, code, reason, result.summary(), verdict.to_dict(), trial_seed, elapsed
        )

    return measure


def _screened(rate: float, result: Any, bound_s: float, percentile: float, seed: int, elapsed: float) -> RatePoint:
    """A screening trial's verdict: every query completed and the run's own percentile within the bound."""
    summary = result.summary()
    lat = result.latencies_s()
    level = float(np.percentile(lat, percentile * 100)) if lat.size else math.inf
    passed = summary["not_completed"] == 0 and level <= bound_s
    reason = (
        f"screen: p{percentile * 100:g} {level * 1e3:.3g} ms of {lat.size} completed queries "
        f"({summary['not_completed']} not completed) against {bound_s * 1e3:g} ms"
    )
    return RatePoint(float(rate), passed, SCREEN if passed else OVER_BOUND, reason, summary, None, seed, elapsed)


def _code(verdict: early_stopping.Verdict, stop_reason: str) -> tuple[str, str]:
    if verdict.valid:
        return VALID, verdict.reason
    if verdict.not_completed and stop_reason == "time limit":
        return NOT_COMPLETED, f"time cap reached with {verdict.not_completed} queries not completed: {verdict.reason}"
    return OVER_BOUND, verdict.reason
