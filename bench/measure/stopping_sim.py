"""How often the interval a sequentially stopped variant reports covers its true speedup, and how many rounds the
rule spends: the stopping rule of :mod:`bench.measure.sequential` run many times on drawn round ratios.

Draws come from a distribution whose centre is known: synthetic log-normal or heavy-tailed ratios around a set
ratio, or resampled recorded round ratios (``paired.round_ratios`` of a sweep's rows), whose centre is the
Hodges-Lehmann estimate of the whole recording. ``python -m bench.measure.stopping_sim FILE`` prints the coverage
and rounds for every series of a recorded run (its ``results.jsonl``, or a ``round-ratios-*.json`` baseline).
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.measure.paired_stats import hodges_lehmann
from bench.measure.sequential import DEFAULT_HALF_WIDTH, MAXIMUM, Looks, Rival, stop_reason

Draw = Callable[[np.random.Generator, int], np.ndarray]  # (rng, rounds) -> log time ratios (variant / fp32)


@dataclass(frozen=True)
class SimOutcome:
    trials: int
    coverage: float  # share of trials whose reported interval held the true speedup
    mean_rounds: float
    reasons: dict[str, int]  # how the trials stopped: tight / settled / maximum


def simulate(
    draw: Draw,
    true_log_ratio: float,
    looks: Looks,
    trials: int = 2000,
    rivals: Sequence[Rival] = (),
    target: float = DEFAULT_HALF_WIDTH,
    seed: int = 0,
) -> SimOutcome:
    """Run the stopping rule ``trials`` times; the reported interval is the one at the look it stopped at."""
    rng = np.random.default_rng(seed)
    covered, spent, reasons = 0, 0, Counter()
    for _ in range(trials):
        logs = draw(rng, looks.rounds[-1])
        for n in looks.rounds:
            centre, lo, hi = hodges_lehmann(logs[:n], looks.alpha)
            speedup, low, high = math.exp(-centre), math.exp(-hi), math.exp(-lo)
            may_stop = looks.may_stop_at(n)
            reason = stop_reason(speedup, low, high, target, rivals, None, False) if may_stop else None
            if reason or n == looks.rounds[-1]:
                covered += lo <= true_log_ratio <= hi
                spent += n
                reasons[(reason or MAXIMUM).split(" ")[0]] += 1
                break
    return SimOutcome(trials, covered / trials, spent / trials, dict(reasons))


def lognormal(log_ratio: float, sd: float) -> Draw:
    return lambda rng, n: rng.normal(log_ratio, sd, n)


def heavy_tailed(log_ratio: float, scale: float, df: float = 3.0) -> Draw:
    """Student-t round noise: now and then a round that a busy moment spoiled."""
    return lambda rng, n: log_ratio + scale * rng.standard_t(df, n)


def resampled(ratios: Sequence[float]) -> tuple[Draw, float]:
    """Draws with replacement from recorded round ratios, and the centre they are drawn around."""
    logs = np.log(np.asarray(ratios, dtype=np.float64))
    centre = hodges_lehmann(logs)[0]
    return (lambda rng, n: rng.choice(logs, n, replace=True)), centre


def recorded_ratios(path: Path) -> dict[str, list[float]]:
    """``recipe/scenario`` -> the round ratios a sweep's rows recorded (``results.jsonl``), or a JSON file of such
    a mapping (``results/baselines/round-ratios-*.json``)."""
    import json

    from bench.results_io import read_rows

    if path.suffix == ".json":
        return {str(k): [float(r) for r in v] for k, v in json.loads(path.read_text()).items()}

    out = {}
    for row in read_rows(path):
        ratios = (row.get("paired") or {}).get("round_ratios")
        if ratios and len(ratios) >= 10:
            out[f"{row['recipe']}/{row['scenario']}"] = [float(r) for r in ratios]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not Path(args[0]).is_file():
        print("usage: python -m bench.measure.stopping_sim RESULTS.jsonl|ROUND-RATIOS.json", file=sys.stderr)
        return 2
    looks = Looks.planned(60, 10)
    print(f"looks {looks.rounds}, per-look alpha {looks.alpha}; true centre: the whole recording's estimate")
    for name, ratios in recorded_ratios(Path(args[0])).items():
        draw, centre = resampled(ratios)
        out = simulate(draw, centre, looks, trials=1000)
        print(f"{name:40s} coverage {out.coverage:.3f}  rounds {out.mean_rounds:5.1f}  {out.reasons}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
