"""``throughput``: a batch of N per call (16 on CPU, 128 on CUDA, ``--batch-size``), images per second.

Its figure is images per second from the mean time per batch; the paired speedup against fp32 is
``throughput_speedup_vs_fp32``. On a GPU that runs out of memory the batch halves and the row says so.
"""

from __future__ import annotations

from typing import Any

from bench.scenarios import register
from bench.scenarios.base import BatchScenario, Column, ScenarioConfig

CPU_BATCH = 16
CUDA_BATCH = 128


class Throughput(BatchScenario):
    name = "throughput"
    description = "batch N per call: images per second"
    headline = "throughput_img_s"
    headline_column = "throughput_img_s"
    unit = "img/s"
    higher_is_better = True
    columns = (
        Column("throughput_img_s", "throughput_img_s", "img/s", "{:,.1f}"),
        Column("throughput_batch", "batch_size"),
    )
    speedup_column = "throughput_speedup_vs_fp32"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--batch-size", type=int, help=f"throughput batch (default {CPU_BATCH} on CPU, {CUDA_BATCH} on CUDA)"
        )

    def batch_size(self, options: Any, device: str) -> int:
        asked = getattr(options, "batch_size", None)
        if asked is not None and asked <= 0:
            from data.errors import InputError

            raise InputError(f"--batch-size must be positive, got {asked}")
        return asked or (CUDA_BATCH if device == "cuda" else CPU_BATCH)

    def budgets(self, quick: bool) -> dict[str, Any]:
        if quick:
            return {"warmup_iters": 2, "warmup_seconds": 0.3, "min_iters": 30, "min_seconds": 1.0, "max_seconds": 20}
        return {"warmup_iters": 3, "warmup_seconds": 1.0, "min_iters": 50, "min_seconds": 3.0, "max_seconds": 60}

    def record(self, row: Any) -> dict[str, Any]:
        out = super().record(row)
        if "device_throughput_img_s" in row:
            out["device_throughput_img_s"] = row["device_throughput_img_s"]
        return out

    def cli_args(self, cfg: ScenarioConfig) -> list[str]:
        return ["--batch-size", str(cfg.batch_size)]


register(Throughput())
