"""``throughput``: a batch of N per call (16 on CPU, 128 on CUDA, ``--batch-size``), images per second.

Its figure is images per second from the mean time per batch; the paired speedup against fp32 is
``throughput_speedup_vs_fp32``. On a GPU that runs out of memory the batch halves and the row says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.scenarios import register
from bench.scenarios.base import num
from bench.scenarios.batch import BatchScenario
from bench.scenarios.config import Column, ScenarioConfig, stop_columns
from data.errors import InputError

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
        Column("device_throughput_img_s", "device_throughput_img_s", optional=True),
        *stop_columns("throughput"),
    )
    speedup_column = "throughput_speedup_vs_fp32"
    speedup_header = "img/s ×fp32"
    label = "throughput"
    panel = "bars"
    axis_label = "images per second{batch} at fp32's pace (fp32 x speedup), higher is better"
    slower_words = "lower throughput than fp32"
    console_columns = ("throughput_img_s",)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--batch-size", type=int, help=f"throughput batch (default {CPU_BATCH} on CPU, {CUDA_BATCH} on CUDA)"
        )

    def batch_size(self, options: Any, device: str) -> int:
        asked = getattr(options, "batch_size", None)
        if asked is not None and asked <= 0:
            raise InputError(f"--batch-size must be positive, got {asked}")
        return asked or (CUDA_BATCH if device == "cuda" else CPU_BATCH)

    def budgets(self, quick: bool) -> dict[str, Any]:
        if quick:
            return {"warmup_iters": 2, "warmup_seconds": 0.3, "min_iters": 30, "min_seconds": 1.0, "max_seconds": 20}
        return {"warmup_iters": 3, "warmup_seconds": 1.0, "min_iters": 50, "min_seconds": 3.0, "max_seconds": 60}

    def figure_from_samples(self, samples_ms: list[float], batch: int) -> float:
        """Images per second at the median batch time."""
        median = super().figure_from_samples(samples_ms, batch)
        return batch * 1e3 / median if median > 0 else float("nan")

    def slower_explanation(self, rec: Mapping[str, Any]) -> str | None:
        speed = self.worse_than_reference(rec)
        batch = num(rec.get("throughput_batch"))
        batch = 0 if batch != batch else int(batch)  # NaN: not recorded
        return None if speed is None else f"{speed:.2f}x fp32 throughput at batch {batch}"

    def answer_text(self, rec: Mapping[str, Any], ranked_first: bool) -> str:
        thr, batch = num(rec.get("throughput_img_s")), num(rec.get("throughput_batch"))
        if thr != thr:
            return ""
        return f", {thr:.1f} img/s" + (f" at batch {int(batch)}" if batch == batch else "")

    def cli_args(self, cfg: ScenarioConfig) -> list[str]:
        return ["--batch-size", str(cfg.batch_size)]


register(Throughput())
