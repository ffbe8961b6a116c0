"""Benchmark of the measurement engine itself: ``python -m bench.tools.engine_overhead``.

For a callable of about 1 ms, our per-call p50 must agree with ``torch.utils.benchmark.Timer`` (which times
blocks of calls and so amortises its own overhead) within 3%. Per-call timing is what gives us p90/p99; this
shows it does not inflate the median.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch

from bench.scenarios import ScenarioConfig
from data.errors import ArgumentParser, run_cli
from models.timers import WallTimer, run_timed, summarize


def calibrated_workload(target_ms: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Square matmul operands sized so one call takes about ``target_ms`` on one thread."""
    size = 64
    while True:
        a, b = torch.randn(size, size), torch.randn(size, size)
        samples = run_timed(lambda a=a, b=b: a @ b, ScenarioConfig("probe", 1, 3, 0.0, 20, 0.05, 2.0), WallTimer())
        if summarize(samples, 1)["p50_ms"] >= target_ms or size >= 4096:
            return a, b, size
        size = int(size * 1.25)


def compare(rounds: int = 3, seconds: float = 3.0) -> dict:
    from torch.utils.benchmark import Timer

    torch.set_num_threads(1)
    a, b, size = calibrated_workload()
    results = []
    for _ in range(rounds):  # alternate the two timers so drift hits both
        ours = summarize(
            run_timed(lambda: a @ b, ScenarioConfig("latency", 1, 20, 0.5, 100, seconds, 60.0), WallTimer()), 1
        )
        theirs = Timer("a @ b", globals={"a": a, "b": b}, num_threads=1).blocked_autorange(min_run_time=seconds)
        results.append({"ours_p50_ms": ours["p50_ms"], "torch_timer_median_ms": theirs.median * 1e3})
    ratios = [r["ours_p50_ms"] / r["torch_timer_median_ms"] for r in results]
    return {"matmul_size": size, "threads": 1, "rounds": results, "median_ratio": sorted(ratios)[len(ratios) // 2]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m bench.tools.engine_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    out = compare(args.rounds, args.seconds)
    print(json.dumps(out, indent=2))
    diff = abs(out["median_ratio"] - 1) * 100
    print(f"our p50 vs torch.utils.benchmark.Timer median: {out['median_ratio']:.4f} ({diff:.2f}% apart)")
    return 0 if diff <= 3 else 1


if __name__ == "__main__":
    run_cli(main)
