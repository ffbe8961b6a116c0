"""Timers that can be trusted: warm-up first, synchronized GPU work, every sample kept, percentiles.

Two timers: :class:`WallTimer` (perf_counter around the call, with ``torch.cuda.synchronize`` before and
after when the work is on a GPU: the end-to-end view) and :class:`CudaEventTimer` (CUDA events recorded
on the stream around the call: device-only time, free of host launch jitter). A run goes on until both a
minimum duration and a minimum count are reached, so fast variants get many samples and slow ones
still get enough for a p99. A producer's quick check and every measurement scenario time with these.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Budget(Protocol):
    """How long to warm up and to time: a scenario's configuration, or a :class:`TimingBudget`."""

    warmup_iters: int
    warmup_seconds: float
    min_iters: int
    min_seconds: float
    max_seconds: float


@dataclass(frozen=True)
class TimingBudget:
    warmup_iters: int = 5
    warmup_seconds: float = 0.3
    min_iters: int = 5
    min_seconds: float = 0.1
    max_seconds: float = 30.0


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


def warm_up(fn: Callable[[], Any], cfg: Budget, timer: WallTimer | CudaEventTimer) -> int:
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


def run_timed(fn: Callable[[], Any], cfg: Budget, timer: WallTimer | CudaEventTimer) -> list[float]:
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


def alternating_p50(
    calls: dict[str, Callable[[], Any]], timer: WallTimer, blocks: int = 10, quick: bool = False
) -> dict[str, float]:
    """Median seconds per call of each of ``calls``, all warmed up, timed in alternating blocks.

    A rough in-process comparison (a producer's quick check, a pruning sanity check): the sides see the same
    machine moments, so the ratio does not compare a cold first call with a warm one. The sweep's isolated,
    interleaved processes are the number to trust.
    """
    warm = TimingBudget(warmup_iters=2 if quick else 5, warmup_seconds=0.1 if quick else 0.3)
    for call in calls.values():
        warm_up(call, warm, timer)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for block in range(blocks):
        for name in names if block % 2 == 0 else list(reversed(names)):
            samples[name] += time_calls(calls[name], timer, 3 if quick else 5, 0.02 if quick else 0.05, 5.0)
    return {name: float(np.median(s)) for name, s in samples.items()}
