"""The largest Poisson request rate one machine serves with a percentile of latency under a bound.

Each trial is one open-loop run at a fixed rate, judged by :mod:`bench.measure.early_stopping`. The search grows
the rate geometrically from a hint until a trial is INVALID (or shrinks it until one is VALID), bisects the
bracket geometrically to a relative tolerance, then re-measures the best rate on a fresh schedule: a rate that
passed once by the luck of its draw and fails the second time is not reported. Every trial is kept for the
latency-against-rate curve. See docs/serving.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.measure import early_stopping
from bench.measure.trials import CAP_TOO_SHORT, RatePoint, open_loop_measure


@dataclass
class SearchResult:
    """The largest VALID rate (``best``, None if none was found), its re-measurement (``confirmation``), every
    trial in the order run, and why the search stopped."""

    best: RatePoint | None
    confirmation: RatePoint | None
    points: list[RatePoint]
    stop_reason: str
    converged: bool
    elapsed_s: float
    budget_s: float
    rel_tol: float

    @property
    def best_rate(self) -> float | None:
        return None if self.best is None else self.best.rate

    def curve(self) -> list[dict[str, Any]]:
        """Latency against rate, one row per trial, sorted by rate (re-measured rates appear twice)."""
        keys = ("p50_ms", "p99_ms", "completed_rate", "mean_batch_size")
        return [
            {"rate": p.rate, "valid": p.valid, "estimate_ms": _estimate_ms(p), **{k: p.summary.get(k) for k in keys}}
            for p in sorted(self.points, key=lambda q: q.rate)
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"best_rate": self.best_rate}


def _estimate_ms(point: RatePoint) -> float | None:
    est = (point.verdict or {}).get("estimate_s")
    return None if est is None else est * 1e3


def rate_hint(batch_time_s: float, max_batch: int, instances: int = 1) -> float:
    """A first rate to try: what ``instances`` busy instances would serve at full batches of ``batch_time_s``."""
    if not batch_time_s > 0:
        raise ValueError(f"batch_time_s must be > 0, got {batch_time_s!r}")
    if max_batch < 1 or instances < 1:
        raise ValueError("max_batch and instances must be >= 1")
    return instances * max_batch / batch_time_s


class _Search:
    """One search: its settings, the trials, the bracket and the budget."""

    def __init__(self, measure: Callable[[float], RatePoint], clock: Callable[[], float], **settings: Any):
        self.measure, self.clock, self.start = measure, clock, clock()
        self.confirm = settings["confirm"] or measure
        self.screens = settings["confirm"] is not None  # trials screen; only a full trial (confirm) claims a rate
        self.confirmed: RatePoint | None = None  # the full trial that re-measured ``lo`` and passed
        self.budget_s, self.rel_tol, self.growth = settings["budget_s"], settings["rel_tol"], settings["growth"]
        self.min_rate, self.max_rate, self.recheck = settings["min_rate"], settings["max_rate"], settings["recheck"]
        self.points: list[RatePoint] = []
        self.lo: RatePoint | None = None  # highest VALID trial not refuted by a re-measurement
        self.hi: float | None = None  # lowest rate found INVALID

    def out_of_time(self) -> bool:
        """Checked before each trial, so the budget is overrun by at most the trial that was running."""
        return self.clock() - self.start >= self.budget_s

    def trial(self, rate: float) -> RatePoint:
        point = self.measure(rate)
        self.points.append(point)
        if point.valid and (self.lo is None or point.rate > self.lo.rate) and (self.hi is None or rate < self.hi):
            self.lo = point
        elif not point.valid and (self.hi is None or rate < self.hi):
            self.hi = rate
        return point

    def best_rate(self) -> float | None:
        return None if self.lo is None else self.lo.rate

    def refute(self, rate: float) -> None:
        """A re-measurement of ``rate`` failed: it is an upper bracket now; fall back to the best VALID below it."""
        self.hi = rate
        below = [p for p in self.points if p.valid and p.rate < rate]
        self.lo = max(below, key=lambda p: p.rate) if below else None

    def run(self, hint: float) -> str:
        """Drive the search; returns why it stopped."""
        self.trial(hint if self.max_rate is None else min(hint, self.max_rate))
        while True:
            if self.lo is None and (reason := self.descend()):  # shrink until a rate passes
                return reason
            if self.hi is None and (reason := self.grow()):  # grow until a rate fails
                return reason
            if reason := self.bisect():
                return reason
            if not self.recheck:
                return "converged"
            if self.out_of_time():
                return "budget spent before the re-measurement"
            best = self.lo.rate  # type: ignore[union-attr]  # bisect returns "" only with a bracket in hand
            if self.reconfirm(best):
                return "converged"

    def reconfirm(self, rate: float) -> bool:
        """Re-measure ``rate`` with the confirming measure; a failure makes it an upper bracket."""
        again = self.confirm(rate)
        self.points.append(again)
        if again.valid:
            self.confirmed = again
            return True
        self.refute(rate)
        return False

    def settle(self, reason: str) -> str:
        """A screening search whose budget ran out before it converged still has its best screened rate checked by
        one full trial (past the budget): without it nothing could be claimed, and a slow machine would report no
        rate at all rather than a rate known less finely."""
        if self.screens and self.recheck and self.confirmed is None and self.lo is not None and "budget" in reason:
            self.reconfirm(self.lo.rate)
        return reason

    def descend(self) -> str:
        while self.lo is None:
            last = self.points[-1]
            if last.code == CAP_TOO_SHORT:
                return f"no VALID rate: {last.reason}"
            rate = (self.hi or last.rate) / self.growth
            if self.min_rate is not None and rate < self.min_rate:
                return f"no VALID rate at or above min_rate {self.min_rate:g}/s"
            if self.out_of_time():
                return "budget spent before any rate was VALID"
            self.trial(rate)
        return ""

    def grow(self) -> str:
        while self.hi is None and self.lo is not None:
            if self.max_rate is not None and self.lo.rate >= self.max_rate:
                return f"still VALID at max_rate {self.max_rate:g}/s"
            if self.out_of_time():
                return "budget spent before any rate was INVALID"
            rate = self.lo.rate * self.growth
            self.trial(rate if self.max_rate is None else min(rate, self.max_rate))
        return ""

    def bisect(self) -> str:
        while self.lo is not None and self.hi is not None and self.hi / self.lo.rate - 1 > self.rel_tol:
            if self.out_of_time():
                return "budget spent while bisecting"
            self.trial(math.sqrt(self.lo.rate * self.hi))
        return ""


def _check_search_args(hint_rate: float, rel_tol: float, budget_s: float, growth: float) -> None:
    if not (math.isfinite(hint_rate) and hint_rate > 0):
        raise ValueError(f"hint_rate must be a positive rate, got {hint_rate!r}")
    if not 0 < rel_tol < 1:
        raise ValueError(f"rel_tol must be in (0, 1), got {rel_tol!r}")
    if not (budget_s > 0 and growth > 1):
        raise ValueError(f"budget_s must be > 0 and growth > 1, got {budget_s!r} and {growth!r}")


def find_max_rate(
    measure: Callable[[float], RatePoint],
    hint_rate: float,
    *,
    rel_tol: float = 0.05,
    budget_s: float = 120.0,
    growth: float = 2.0,
    min_rate: float | None = None,
    max_rate: float | None = None,
    recheck: bool = True,
    clock: Callable[[], float] = time.perf_counter,
    confirm: Callable[[float], RatePoint] | None = None,
) -> SearchResult:
    """The largest rate ``measure`` finds VALID, to within ``rel_tol`` of the lowest INVALID one above it.

    No trial starts once ``budget_s`` has passed (so the search ends at most one trial past it); the result then
    says ``converged=False`` and keeps the best rate found so far. With ``confirm``, that best rate is still
    re-measured once by a full trial, so a search cut short claims a coarser rate rather than none. ``max_rate``
    stops the growth (say, the harness's own ceiling); ``min_rate`` stops the descent when even slow rates fail.
    ``confirm``: the measure that re-measures the answer (a full trial when ``measure`` screens); a failed
    confirmation brackets from above.
    """
    _check_search_args(hint_rate, rel_tol, budget_s, growth)
    settings = {"rel_tol": rel_tol, "growth": growth, "min_rate": min_rate, "max_rate": max_rate, "recheck": recheck}
    settings["confirm"] = confirm
    s = _Search(measure, clock, budget_s=budget_s, **settings)
    reason = s.settle(s.run(hint_rate))
    converged = reason == "converged"
    confirmation = s.confirmed if recheck and s.confirmed is not None and s.confirmed.rate == s.best_rate() else None
    elapsed = clock() - s.start
    return SearchResult(s.lo, confirmation, s.points, reason, converged, elapsed, budget_s, rel_tol)


def _zero_cost(n: int) -> None:
    """An instance that returns at once: what is left is the engine's own cost."""


def harness_ceiling(
    max_batch: int,
    max_delay_s: float,
    instances: int,
    bound_s: float,
    *,
    percentile: float = early_stopping.DEFAULT_PERCENTILE,
    confidence: float = early_stopping.DEFAULT_CONFIDENCE,
    budget_s: float = 20.0,
    hint_rate: float = 2000.0,
    rel_tol: float = 0.1,
    min_duration_s: float = 0.3,
    time_cap_s: float = 5.0,
    max_rate: float = 1e6,
    seed: int = 0,
) -> SearchResult:
    """The largest rate the load generator itself sustains under ``bound_s`` with instances that cost nothing.

    A variant's measured rate near this figure says more about the harness than about the model. Run it with the
    same batch size, delay, instance count and bound as the scenario, on the same machine and CPUs.
    """
    if int(instances) != instances or instances < 1:
        raise ValueError(f"instances must be a positive integer, got {instances!r}")
    measure = open_loop_measure(
        [_zero_cost] * int(instances),
        max_batch,
        max_delay_s,
        bound_s,
        percentile=percentile,
        confidence=confidence,
        min_duration_s=min_duration_s,
        time_cap_s=time_cap_s,
        seed=seed,
    )
    return find_max_rate(measure, hint_rate, rel_tol=rel_tol, budget_s=budget_s, max_rate=max_rate)
