"""Timing that can be trusted: warm-up first, synchronized GPU work, every sample kept, percentiles.

Two timers: :class:`WallTimer` (perf_counter around the call, with ``torch.cuda.synchronize`` before and
after when the work is on a GPU: the end-to-end view) and :class:`CudaEventTimer` (CUDA events recorded
on the stream around the call: device-only time, free of host launch jitter). A run goes on until both a
minimum duration and a minimum count are reached, so fast variants get many samples and slow ones
still get enough for a p99.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ScenarioConfig:
    """One measurement scenario (after MLPerf): ``latency`` at batch 1, ``throughput`` at batch N."""

    name: str
    batch_size: int
    warmup_iters: int = 10
    warmup_seconds: float = 1.0
    min_iters: int = 50
    min_seconds: float = 3.0
    max_seconds: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_scenarios(
    quick: bool, device: str = "cpu", throughput_batch: int | None = None
) -> tuple[ScenarioConfig, ...]:
    """Defaults near MLPerf's spirit but sized for a 2-core CI box; ``quick`` is a smoke run."""
    batch = throughput_batch or (128 if device == "cuda" else 16)
    # Sample counts sized for the regression gate: a one-sided Mann-Whitney U at p < 0.001 needs a few hundred
    # per-call latencies and tens of batches to catch a 10% slowdown (bench.gate.sim measured the power).
    if quick:
        return (
            ScenarioConfig(
                "latency", 1, warmup_iters=5, warmup_seconds=0.3, min_iters=200, min_seconds=1.0, max_seconds=15
            ),
            ScenarioConfig(
                "throughput", batch, warmup_iters=2, warmup_seconds=0.3, min_iters=30, min_seconds=1.0, max_seconds=20
            ),
        )
    return (
        ScenarioConfig(
            "latency", 1, warmup_iters=10, warmup_seconds=1.0, min_iters=300, min_seconds=3.0, max_seconds=60
        ),
        ScenarioConfig(
            "throughput", batch, warmup_iters=3, warmup_seconds=1.0, min_iters=50, min_seconds=3.0, max_seconds=60
        ),
    )


def cuda_synchronize() -> None:
    import torch

    torch.cuda.synchronize()


class WallTimer:
    """Seconds per call by ``perf_counter``; synchronizes the GPU before starting and before stopping."""

    method = "perf_counter"

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync
        if sync is not None:
            self.method = "perf_counter+cuda_synchronize"

    def time(self, fn: Callable[[], Any]) -> float:
        if self.sync is not None:
            self.sync()
        start = time.perf_counter()
        fn()
        if self.sync is not None:
            self.sync()
        return time.perf_counter() - start


class CudaEventTimer:
    """Device-only seconds per call from CUDA events on the current stream."""

    method = "cuda_events"

    def __init__(self) -> None:
        import torch

        self._torch = torch

    def time(self, fn: Callable[[], Any]) -> float:
        torch = self._torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def warm_up(fn: Callable[[], Any], cfg: ScenarioConfig, timer: WallTimer | CudaEventTimer) -> int:
    """Untimed calls until both ``warmup_iters`` and ``warmup_seconds`` are reached (capped by max_seconds)."""
    warm_start = time.perf_counter()
    done = 0
    while done < cfg.warmup_iters or time.perf_counter() - warm_start < cfg.warmup_seconds:
        timer.time(fn)
        done += 1
        if time.perf_counter() - warm_start > cfg.max_seconds:
            break
    return done


def time_calls(
    fn: Callable[[], Any],
    timer: WallTimer | CudaEventTimer,
    min_iters: int,
    min_seconds: float,
    max_seconds: float,
) -> list[float]:
    """Per-call seconds until both ``min_iters`` and ``min_seconds`` are reached, or ``max_seconds`` passed."""
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        samples.append(timer.time(fn))
        elapsed = time.perf_counter() - start
        if (len(samples) >= min_iters and elapsed >= min_seconds) or elapsed >= max_seconds:
            return samples


def run_timed(fn: Callable[[], Any], cfg: ScenarioConfig, timer: WallTimer | CudaEventTimer) -> list[float]:
    """Warm up, then time ``fn`` until both ``min_iters`` and ``min_seconds`` are reached (capped by max_seconds)."""
    warm_up(fn, cfg, timer)
    return time_calls(fn, timer, cfg.min_iters, cfg.min_seconds, cfg.max_seconds)


def summarize(samples_s: list[float], batch_size: int) -> dict[str, Any]:
    """Percentiles in milliseconds per call and images per second (from the mean time per batch)."""
    if not samples_s:
        raise ValueError("no samples to summarize")
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    return {
        "n": int(ms.size),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": mean,
        "std_ms": std,
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "cov": std / mean if mean > 0 else math.nan,
        "throughput_img_s": batch_size * 1e3 / mean if mean > 0 else math.nan,
    }
