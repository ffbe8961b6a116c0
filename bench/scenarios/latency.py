"""``latency``: one image per call, back to back (MLPerf's SingleStream): every sample kept, p50/p90/p99.

Its figure is the batch-1 p50; the paired speedup against fp32 and its 95% interval are the leaderboard's first
columns and what the answer ranks by. Budgets are sized for the regression gate: a one-sided Mann-Whitney U at
p < 0.001 needs a few hundred per-call latencies to catch a 10% slowdown (docs/gate.md).
"""

from __future__ import annotations

from typing import Any

from bench.scenarios import register
from bench.scenarios.base import BatchScenario, Column, ScenarioConfig


class Latency(BatchScenario):
    name = "latency"
    description = "batch 1, back to back: p50/p90/p99 per call"
    headline = "p50_ms"
    headline_column = "p50_ms"
    unit = "ms"
    higher_is_better = False
    columns = (
        Column("p50_ms", "p50_ms", "p50 ms", "{:.3f}"),
        Column("p90_ms", "p90_ms"),
        Column("p99_ms", "p99_ms", "p99 ms", "{:.3f}"),
        Column("cov", "cov", "CoV", "{:.2f}"),
    )
    speedup_column = "speedup_vs_fp32"
    interval_columns = ("speedup_ci95_low", "speedup_ci95_high")

    def batch_size(self, options: Any, device: str) -> int:
        return 1

    def budgets(self, quick: bool) -> dict[str, Any]:
        if quick:
            return {"warmup_iters": 5, "warmup_seconds": 0.3, "min_iters": 200, "min_seconds": 1.0, "max_seconds": 15}
        return {"warmup_iters": 10, "warmup_seconds": 1.0, "min_iters": 300, "min_seconds": 3.0, "max_seconds": 60}

    def record(self, row: Any) -> dict[str, Any]:
        out = super().record(row)
        if "device_p50_ms" in row:
            out["device_p50_ms"] = row["device_p50_ms"]
        return out

    def cli_args(self, cfg: ScenarioConfig) -> list[str]:
        return []


register(Latency())
