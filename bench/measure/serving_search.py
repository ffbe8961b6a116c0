"""The best serving configuration of one variant: the largest Poisson rate it holds with its p99 under the bound, over
a small grid of largest batch B, longest queue delay D and instance x thread splits, within a time budget.

The grid is walked, not swept: every split at B = 1, D = 0 first (what a plain server does), then larger batches on
the best split with a delay of a quarter of the bound until a batch size stops paying (under 5% more), then other
delays around the best batch while time is left. Each configuration's rate is found by :func:`find_max_rate` on
screening trials and claimed only by a full trial under the early-stopping rule. Everything runs on instances the
caller makes (``make_instances(k, threads) -> [f(n), ...]``), so a test can hand it synthetic ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.measure.rate_search import SearchResult, find_max_rate, rate_hint
from bench.measure.trials import Instance, open_loop_measure

BATCHES = (1, 2, 4, 8, 16)
DELAY_FRACTIONS = (0.25, 0.125, 0.5)  # of the bound: the first is the ladder's, the others refine the best batch
GAIN = 1.05  # a larger batch must serve 5% more to be worth its latency
SCREEN_QUERIES = 200


@dataclass(frozen=True)
class ServeConfig:
    """One serving configuration: largest batch, longest queue delay, instances and threads per instance."""

    max_batch: int
    max_delay_s: float
    instances: int
    threads: int

    def label(self) -> str:
        return f"B={self.max_batch} D={self.max_delay_s * 1e3:.3g}ms {self.instances}x{self.threads}"


@dataclass
class ConfigResult:
    config: ServeConfig
    search: SearchResult

    @property
    def rate(self) -> float | None:
        """The claimed rate: the best VALID one confirmed by a full trial, else None."""
        confirmed = self.search.confirmation
        return self.search.best_rate if confirmed is not None and confirmed.valid else None

    @property
    def rate_is_lower_bound(self) -> bool:
        """The claimed rate was never exceeded by a trial that failed: the search ran out of time (or hit its
        ceiling) still growing, so the configuration holds at least this rate, perhaps much more."""
        rate = self.rate
        return bool(rate) and not any(not p.valid and p.rate > rate for p in self.search.points)

    def to_dict(self) -> dict[str, Any]:
        best = self.search.best
        return {
            **asdict(self.config),
            "label": self.config.label(),
            "rate": self.rate,
            "rate_is_lower_bound": self.rate_is_lower_bound,
            "p99_ms": (best.summary or {}).get("p99_ms") if best else None,
            "stop_reason": self.search.stop_reason,
            "trials": len(self.search.points),
            "curve": self.search.curve(),
        }


@dataclass
class ServingResult:
    """Every configuration tried, the best one (None when no rate held the bound), and what it cost."""

    bound_s: float
    configs: list[ConfigResult] = field(default_factory=list)
    elapsed_s: float = 0.0
    budget_s: float = 0.0
    stopped: str = ""

    @property
    def best(self) -> ConfigResult | None:
        held = [c for c in self.configs if c.rate]
        return max(held, key=lambda c: c.rate) if held else None

    def closest(self) -> dict[str, Any] | None:
        """When nothing held the bound: the trial with the lowest p99, for "the best p99 reached was ..."."""
        points = [(p, c) for c in self.configs for p in c.search.points if (p.summary or {}).get("p99_ms")]
        if not points:
            return None
        point, cfg = min(points, key=lambda pc: pc[0].summary["p99_ms"])
        full = point.verdict is not None  # a full trial judged by the early-stopping rule, else a screen
        return {"p99_ms": point.summary["p99_ms"], "rate": point.rate, "config": cfg.config.label(), "full": full}


@dataclass(frozen=True)
class SearchSettings:
    """How long and how finely to look: the stage's budget for this variant, and each search's share of it."""

    budget_s: float
    per_config_s: float
    min_duration_s: float = 1.0
    rel_tol: float = 0.1
    seed: int = 0


def _batch_time(instance: Instance, batch: int, repeats: int = 3) -> float:
    """Median seconds of one call at ``batch`` (after the caller's warm-up): the search's first rate comes from it."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        instance(batch)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _search(config: ServeConfig, instances: Sequence[Instance], bound_s: float, s: SearchSettings, budget: float):
    per_call = max(_batch_time(instances[0], config.max_batch), 1e-5)
    hint = rate_hint(per_call, config.max_batch, config.instances)
    common = {"min_duration_s": s.min_duration_s, "seed": s.seed}
    cap = max(10.0, 4 * bound_s + 2 * budget)
    screen = open_loop_measure(instances, config.max_batch, config.max_delay_s, bound_s, time_cap_s=cap,
                               screen_queries=SCREEN_QUERIES, **common)  # fmt: skip
    full = open_loop_measure(instances, config.max_batch, config.max_delay_s, bound_s, time_cap_s=cap, **common)
    result = find_max_rate(screen, hint, rel_tol=s.rel_tol, budget_s=budget, confirm=full)
    return ConfigResult(config, result)


def _walk_rate(result: ConfigResult) -> float:
    """What the walk steers by: the claimed rate, else the best screened one (a search cut short by its share of the
    budget still says which way is better); only a claimed rate is ever reported."""
    return result.rate or result.search.best_rate or 0.0


def best_configuration(
    make_instances: Callable[[int, int], Sequence[Instance]],
    splits: Sequence[tuple[int, int]],
    bound_s: float,
    settings: SearchSettings,
    batches: Sequence[int] = BATCHES,
) -> ServingResult:
    """Walk the grid (module docstring) until ``settings.budget_s`` is spent; each search gets at most
    ``settings.per_config_s``. ``make_instances(k, t)`` returns ``k`` warm callables ``f(n)`` of ``t`` threads each;
    it is called before every search, so a caller that caches them must set the split's threads again."""
    if not bound_s > 0:
        raise ValueError(f"bound_s must be > 0, got {bound_s!r}")
    out = ServingResult(bound_s, budget_s=settings.budget_s)
    start = time.perf_counter()

    def left() -> float:
        return settings.budget_s - (time.perf_counter() - start)

    def run(config: ServeConfig) -> ConfigResult | None:
        if left() <= 0:
            out.stopped = out.stopped or f"budget spent before {config.label()}"
            return None
        instances = make_instances(config.instances, config.threads)  # also sets the split's threads again
        budget = min(settings.per_config_s, left())  # making the instances (a warm-up) may have spent the rest
        if budget <= 0:
            out.stopped = out.stopped or f"budget spent before {config.label()}"
            return None
        result = _search(config, instances, bound_s, settings, budget)
        out.configs.append(result)
        return result

    def leading(results: Sequence[ConfigResult | None]) -> ConfigResult | None:
        held = [r for r in results if r is not None and _walk_rate(r)]
        return max(held, key=_walk_rate) if held else None

    best = leading([run(ServeConfig(1, 0.0, k, t)) for k, t in splits])
    split = (best.config.instances, best.config.threads) if best else tuple(splits[0])
    ladder_best = best
    delay = DELAY_FRACTIONS[0] * bound_s
    for batch in (b for b in batches if b > 1):
        result = run(ServeConfig(batch, delay, *split))
        if result is None or not _walk_rate(result):
            break
        if ladder_best is not None and _walk_rate(result) < GAIN * _walk_rate(ladder_best):
            break
        ladder_best = result
    if ladder_best is not None and ladder_best.config.max_batch > 1:
        for fraction in DELAY_FRACTIONS[1:]:
            run(ServeConfig(ladder_best.config.max_batch, fraction * bound_s, *split))
    out.elapsed_s = time.perf_counter() - start
    return out


def to_dict(result: ServingResult) -> dict[str, Any]:
    best = result.best
    return {
        "bound_ms": result.bound_s * 1e3,
        "best": best.to_dict() if best else None,
        "closest": None if best else result.closest(),
        "configs": [c.to_dict() for c in result.configs],
        "elapsed_s": round(result.elapsed_s, 2),
        "budget_s": result.budget_s,
        "stopped": result.stopped,
    }


def splits_for(threads: int, device: str) -> list[tuple[int, int]]:
    """Instance x thread splits of the run's threads: one instance with all of them, one per thread, and (with 4 or
    more) two halves. On CUDA the instances share the GPU: one, and two (streams are not modelled)."""
    if device == "cuda":
        return [(1, threads), (2, threads)]
    out = [(1, threads)]
    if threads >= 4:
        out.append((2, threads // 2))
    if threads > 1:
        out.append((threads, 1))
    return out
