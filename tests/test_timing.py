"""The measurement engine on fake callables with known timings, and the CUDA timer logic on CPU."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.scenarios import ScenarioConfig
from models.timers import WallTimer, run_timed, summarize


def test_summary_statistics_on_known_samples():
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    s = summarize(samples, batch_size=4)
    assert s["n"] == 100
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p90_ms"] == pytest.approx(np.percentile(np.arange(1, 101), 90))
    assert s["p99_ms"] == pytest.approx(99.01)
    assert s["mean_ms"] == pytest.approx(50.5)
    assert s["std_ms"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert s["cov"] == pytest.approx(s["std_ms"] / 50.5)
    assert s["throughput_img_s"] == pytest.approx(4 * 1000 / 50.5)


def test_run_until_both_minimum_count_and_duration():
    calls = []
    cfg = ScenarioConfig("latency", 1, warmup_iters=3, warmup_seconds=0.0, min_iters=5, min_seconds=0.05, max_seconds=5)
    samples = run_timed(lambda: (calls.append(1), time.sleep(0.002)), cfg, WallTimer())
    assert len(calls) == len(samples) + 3  # warm-up calls are not samples
    assert len(samples) >= 5 and sum(samples) >= 0.05 * 0.9
    assert all(s >= 0.002 for s in samples)


def test_max_seconds_caps_a_slow_callable():
    cfg = ScenarioConfig(
        "latency", 1, warmup_iters=1, warmup_seconds=0.0, min_iters=1000, min_seconds=0.0, max_seconds=0.05
    )
    samples = run_timed(lambda: time.sleep(0.01), cfg, WallTimer())
    assert 1 <= len(samples) < 20


def test_wall_timer_synchronizes_before_and_after_every_call():
    events = []
    timer = WallTimer(sync=lambda: events.append("sync"))
    timer.time(lambda: events.append("work"))
    assert events == ["sync", "work", "sync"]
    assert "cuda_synchronize" in timer.method


def test_cuda_event_timer_records_around_the_call(monkeypatch):
    import torch

    from models.timers import CudaEventTimer

    log = []

    class FakeEvent:
        def __init__(self, enable_timing):
            assert enable_timing
            self.t = None

        def record(self):
            log.append("record")
            self.t = len(log)

        def synchronize(self):
            log.append("sync")

        def elapsed_time(self, end):
            return 2.5  # ms

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    seconds = CudaEventTimer().time(lambda: log.append("work"))
    assert log == ["record", "work", "record", "sync"]
    assert seconds == pytest.approx(0.0025)
