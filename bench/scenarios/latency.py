"""``latency``: one image per call, back to back (MLPerf's SingleStream): every sample kept, p50/p90/p99.

Its figure is the batch-1 p50; the paired speedup against fp32 and its 95% interval are the leaderboard's first
columns and what the answer ranks by. Budgets are sized for the regression gate: a one-sided Mann-Whitney U at
p < 0.001 needs a few hundred per-call latencies to catch a 10% slowdown (docs/gate.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.scenarios import register
from bench.scenarios.base import num
from bench.scenarios.batch import BatchScenario
from bench.scenarios.config import Column, stop_columns


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
        Column("device_p50_ms", "device_p50_ms", optional=True),
        *stop_columns("latency"),
    )
    speedup_column = "speedup_vs_fp32"
    interval_columns = ("speedup_ci95_low", "speedup_ci95_high")
    ranks = True
    speedup_header = "speedup ×fp32 (batch 1)"
    label = "batch 1"
    panel = "front"
    axis_label = "latency at batch 1, p50 in milliseconds (at fp32's pace: fp32 p50 / speedup; lower is better)"
    slower_words = "slower than fp32 at batch 1"
    console_columns = ("p50_ms", "p99_ms")

    def batch_size(self, options: Any, device: str) -> int:
        return 1

    def summary(self, samples_s: list[float], batch: int) -> dict[str, Any]:
        """Per-call figures only: images per second is the throughput row's figure, one name for one number."""
        out = super().summary(samples_s, batch)
        out.pop("throughput_img_s", None)
        return out

    def budgets(self, quick: bool) -> dict[str, Any]:
        if quick:
            return {"warmup_iters": 5, "warmup_seconds": 0.3, "min_iters": 200, "min_seconds": 1.0, "max_seconds": 15}
        return {"warmup_iters": 10, "warmup_seconds": 1.0, "min_iters": 300, "min_seconds": 3.0, "max_seconds": 60}

    def slower_explanation(self, rec: Mapping[str, Any]) -> str | None:
        speed = self.worse_than_reference(rec)
        return None if speed is None else f"{speed:.2f}x fp32 speed at batch 1"

    def answer_text(self, rec: Mapping[str, Any], ranked_first: bool) -> str:
        speed = num(rec.get(self.speedup_column))
        if ranked_first:
            speed_txt = " (no variant beats the fp32 reference here)"
        elif speed != speed:  # NaN: no speedup known
            speed_txt = ""
        else:
            speed_txt = f", {speed:.2f}x fp32 speed" + (" (slower than fp32)" if speed < 1.0 else "")
        return f"p50 {num(rec.get('p50_ms')):.3f} ms at batch 1{speed_txt}"


register(Latency())
