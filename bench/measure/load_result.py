"""What one open-loop run recorded, per request and per batch, and its summary: the figures a verdict reads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

_LEVELS = {"p50_ms": 50, "p90_ms": 90, "p99_ms": 99, "p99_9_ms": 99.9}


def _percentiles_ms(values_s: np.ndarray) -> dict[str, float | None]:
    if values_s.size == 0:
        return dict.fromkeys([*_LEVELS, "mean_ms", "max_ms"])
    ms = values_s * 1e3
    out = {k: float(v) for k, v in zip(_LEVELS, np.percentile(ms, list(_LEVELS.values())), strict=True)}
    return out | {"mean_ms": float(ms.mean()), "max_ms": float(ms.max())}


@dataclass
class LoadResult:
    """Everything one open-loop run recorded. Times are seconds from the run's start, ``origin`` on the
    ``time.perf_counter`` clock.

    Per request (in schedule order): ``scheduled_s``, ``dispatch_s`` (its batch's call began; NaN if never taken),
    ``completion_s`` (its batch's call returned; NaN if not completed) and ``batch_id`` (-1 if never taken). Per
    batch (in the order formed): its first request's index, size, worker and ``ready_s`` (the worker began forming
    it). ``settings``: max_batch, max_delay_s, instances, time_limit_s and the rest.
    """

    scheduled_s: np.ndarray
    dispatch_s: np.ndarray
    completion_s: np.ndarray
    batch_id: np.ndarray
    batch_first: np.ndarray
    batch_size: np.ndarray
    batch_worker: np.ndarray
    batch_ready_s: np.ndarray
    settings: dict[str, Any]
    duration_s: float
    stop_reason: str
    error: str | None = None
    origin: float = 0.0

    @property
    def completed(self) -> np.ndarray:  # the requests whose batch returned
        return ~np.isnan(self.completion_s)

    def latencies_s(self) -> np.ndarray:
        """Completion minus *scheduled* arrival, completed requests only: the latency a client would see."""
        return (self.completion_s - self.scheduled_s)[self.completed]

    def send_latencies_s(self) -> np.ndarray:
        """Completion minus dispatch, completed requests only: what a clock started at send time would report. Kept
        to show what coordinated omission hides, never for a verdict."""
        return (self.completion_s - self.dispatch_s)[self.completed]

    def summary(self) -> dict[str, Any]:
        """Counts, rates, latency percentiles (ms, linear interpolation as :func:`models.timers.summarize`) and
        batch sizes. ``completed_rate`` is completed requests over the time to the last completion, so a run whose
        completions fall behind its schedule reads lower than its ``scheduled_rate``."""
        n, completed = int(self.scheduled_s.size), int(self.completed.sum())
        sizes = self.batch_size[self.completed[self.batch_first]]  # the batches that completed
        last_done = float(np.nanmax(self.completion_s)) if completed else 0.0
        return {
            "scheduled": n,
            "completed": completed,
            "not_completed": n - completed,
            "scheduled_after_limit": int(np.count_nonzero(self.scheduled_s > self.settings["time_limit_s"])),
            "scheduled_rate": n / float(self.scheduled_s[-1]) if self.scheduled_s[-1] > 0 else None,
            "completed_rate": completed / last_done if last_done > 0 else None,
            "batches": int(sizes.size),
            "mean_batch_size": float(sizes.mean()) if sizes.size else None,
            "max_batch_size": int(sizes.max()) if sizes.size else None,
            "duration_s": self.duration_s,
            "stop_reason": self.stop_reason,
            **_percentiles_ms(self.latencies_s()),
            **{
                f"send_{k}": v for k, v in _percentiles_ms(self.send_latencies_s()).items() if k in ("p50_ms", "p99_ms")
            },
        }

    def to_dict(self, raw: bool = False, max_raw: int = 10_000) -> dict[str, Any]:
        """JSON-ready: settings and summary, and with ``raw`` the per-request times in ms, every ``stride``-th request
        when there are more than ``max_raw`` (the summary is always computed from all of them)."""
        out: dict[str, Any] = {"settings": dict(self.settings), "error": self.error, "summary": self.summary()}
        if raw:
            if max_raw < 1:
                raise ValueError(f"max_raw must be >= 1, got {max_raw}")
            stride = max(1, math.ceil(self.scheduled_s.size / max_raw))
            pick = np.arange(0, self.scheduled_s.size, stride)
            out["raw"] = {"stride": stride, "index": pick.tolist(), "batch_id": self.batch_id[pick].tolist()}
            for name in ("scheduled", "dispatch", "completion"):  # NaN is not JSON: None where there is no time
                ms = (getattr(self, f"{name}_s")[pick] * 1e3).tolist()
                out["raw"][f"{name}_ms"] = [None if math.isnan(v) else round(v, 3) for v in ms]
        return out
