"""Open-loop load: requests arrive on a schedule of their own, wait in one queue, and are served in dynamic batches
by K model instances, one thread each. Latency runs from a request's *scheduled* arrival, so a stall is charged to
every request that arrived during it (a clock started at dispatch would hide it: coordinated omission). The schedule
is drawn in advance, so the queue at time ``t`` is the requests not yet taken scheduled by ``t``, and no generator
thread competes with the model for the CPU. One worker at a time forms a batch: the oldest waiting requests, up to
``max_batch``, waiting for more until the oldest one's scheduled time plus ``max_delay_s``; it does not look ahead
(a real server could not). See docs/serving.md."""

from __future__ import annotations

import bisect
import gc
import math
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.measure.load_result import LoadResult

Instance = Callable[[int], object]

clock = time.perf_counter  # monotonic, sub-microsecond resolution; every time here is an offset from a run's start


def poisson_arrivals(rate: float, count: int, seed: int) -> np.ndarray:
    """Scheduled offsets (seconds from the start) of ``count`` Poisson arrivals at ``rate`` per second, drawn in
    advance from a seeded generator. The first arrives one gap after the start, so ``count / last`` is the rate."""
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
    if int(count) != count or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, int(count)))


class OpenLoopError(RuntimeError):
    """An instance call raised, or did not return in time; ``result`` holds what was measured up to then."""

    def __init__(self, message: str, result: LoadResult | None = None):
        super().__init__(message)
        self.result = result


@dataclass
class _Batch:
    first: int
    size: int
    worker: int
    ready: float
    dispatch: float = math.nan
    completion: float = math.nan


class _Engine:
    """State shared by the worker threads. ``_form`` runs under ``form_lock`` only; each batch's times are written
    by the one worker that runs it, so recording a completion takes no lock."""

    def __init__(self, instances: Sequence[Instance], arrivals: np.ndarray, settings: dict[str, Any]):
        self.instances = list(instances)
        self.sched = arrivals.tolist()  # bisect and indexing on a list are several times cheaper than on an array
        self.n = len(self.sched)
        self.max_batch, self.max_delay = settings["max_batch"], settings["max_delay_s"]
        self.limit, self.stop_when_over = settings["time_limit_s"], settings["stop_when_over"]
        self.next = 0  # the oldest request not yet taken
        self.batches: list[_Batch] = []
        self.form_lock, self.count_lock = threading.Lock(), threading.Lock()
        self.stop = threading.Event()  # set: no new batches; wakes a worker waiting for arrivals
        self.stop_reason, self.over, self.t0 = "", 0, 0.0
        self.errors: list[tuple[int, BaseException, str]] = []

    def now(self) -> float:
        return clock() - self.t0

    def halt(self, reason: str) -> None:
        with self.count_lock:
            self.stop_reason = self.stop_reason or reason
        self.stop.set()

    def _wait_until(self, when: float) -> bool:  # False if the run was stopped meanwhile
        delay = when - self.now()
        if delay > 0:
            self.stop.wait(delay)
        return not self.stop.is_set()

    def _form(self, worker: int) -> _Batch | None:
        """The next batch for ``worker``, or None when the run is over (time limit, schedule exhausted, stopped)."""
        ready = now = self.now()
        if (i := self.next) >= self.n:
            self.halt("all requests taken")
            return None
        first = self.sched[i]
        while now < first and now < self.limit and self._wait_until(min(first, self.limit)):
            now = self.now()  # the oldest request has not arrived yet
        if self.stop.is_set() or now >= self.limit:
            self.halt("time limit")  # keeps an earlier reason
            return None
        end = min(i + self.max_batch, self.n)
        waiting = bisect.bisect_right(self.sched, now, i, end) - i
        if waiting < self.max_batch and self.max_delay > 0:
            deadline = min(first + self.max_delay, self.limit)
            while waiting < end - i and now < deadline:
                if not self._wait_until(min(self.sched[i + waiting], deadline)):
                    return None
                now = self.now()
                waiting = bisect.bisect_right(self.sched, now, i, end) - i
            exhausted = waiting < self.max_batch and now < deadline  # no more arrivals: a server would still wait
            if exhausted and not self._wait_until(deadline):
                return None
        self.next = i + waiting
        self.batches.append(_Batch(first=i, size=waiting, worker=worker, ready=ready))
        return self.batches[-1]

    def _count_over(self, b: _Batch) -> None:  # stop once more went over the bound than a passing run may have
        bound, allowed = self.stop_when_over
        late = bisect.bisect_left(self.sched, b.completion - bound, b.first, b.first + b.size) - b.first
        with self.count_lock:
            self.over += late
            over = self.over
        if over > allowed:
            self.halt(f"over bound: {over} requests over {bound * 1e3:g} ms, {allowed} allowed")

    def worker(self, k: int, go: threading.Event) -> None:
        call = self.instances[k]
        go.wait()
        while not self.stop.is_set():
            with self.form_lock:
                batch = self._form(k)
            if batch is None:
                return
            batch.dispatch = self.now()
            try:
                call(batch.size)
            except Exception as exc:  # the run ends; the caller gets it after every thread is joined
                with self.count_lock:
                    self.errors.append((k, exc, traceback.format_exc()))
                self.halt(f"error in instance {k}")
                return
            batch.completion = self.now()
            if self.stop_when_over is not None:
                self._count_over(batch)

    def result(self, duration: float, settings: dict[str, Any]) -> LoadResult:
        rows = [(b.first, b.size, b.worker, b.ready, b.dispatch, b.completion) for b in self.batches]
        columns = np.array(rows, dtype=np.float64).reshape(-1, 6).T
        (first, size, worker), (ready, dispatch, done) = columns[:3].astype(np.int64), columns[3:]

        def per_request(values: np.ndarray, fill: float) -> np.ndarray:
            # batches are contiguous and in schedule order, so request first[b] + j belongs to batch b
            out = np.full(self.n, fill, dtype=values.dtype)
            out[: int(size.sum())] = np.repeat(values, size)
            return out

        k, exc, _ = self.errors[0] if self.errors else (0, None, "")
        return LoadResult(
            scheduled_s=np.asarray(self.sched, dtype=np.float64),
            dispatch_s=per_request(dispatch, math.nan),
            completion_s=per_request(done, math.nan),
            batch_id=per_request(np.arange(len(self.batches)), -1),
            batch_first=first,
            batch_size=size,
            batch_worker=worker,
            batch_ready_s=ready,
            settings=settings,
            duration_s=duration,
            stop_reason=self.stop_reason or "all requests taken",
            error=None if exc is None else f"instance {k} raised {type(exc).__name__}: {exc}",
            origin=self.t0,
        )


def _check_run_args(instances: Sequence[Instance], arrivals: np.ndarray, settings: dict[str, Any]) -> None:
    if len(instances) < 1 or not all(callable(f) for f in instances):
        raise ValueError("instances must be one or more callables taking the batch size")
    bad = arrivals.ndim != 1 or arrivals.size < 1 or not np.isfinite(arrivals).all()
    if bad or arrivals[0] < 0 or (np.diff(arrivals) < 0).any():
        raise ValueError("arrivals must be a non-empty 1-D array of sorted offsets >= 0 in seconds")
    max_batch, delay, limit = settings["max_batch"], settings["max_delay_s"], settings["time_limit_s"]
    if int(max_batch) != max_batch or max_batch < 1:
        raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
    if not (math.isfinite(delay) and delay >= 0):
        raise ValueError(f"max_delay_s must be >= 0 seconds, got {delay!r}")
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"time_limit_s must be a positive number of seconds, got {limit!r}")
    over = settings["stop_when_over"]
    if over is not None and (over[0] <= 0 or over[1] < 0):
        raise ValueError(f"stop_when_over must be (bound_s > 0, allowed >= 0), got {over!r}")


def run_open_loop(
    instances: Sequence[Instance],
    arrivals: np.ndarray,
    max_batch: int,
    max_delay_s: float,
    time_limit_s: float,
    *,
    stop_when_over: tuple[float, int] | None = None,
    call_timeout_s: float | None = None,
) -> LoadResult:
    """Serve the scheduled ``arrivals`` (offsets in seconds) with one worker thread per instance; ``instances[k](n)``
    runs one batch of ``n`` requests on inputs the caller prepared beforehand.

    No new batch starts once ``time_limit_s`` has passed; calls already running finish, so the run lasts at most the
    limit plus one call. ``stop_when_over=(bound_s, allowed)`` also stops it once more than ``allowed`` requests
    took longer than ``bound_s``: such a run can no longer pass. Requests never taken stay not completed. An
    exception in an instance stops the run, and once every thread is joined it is raised as :class:`OpenLoopError`
    (``.result``: the partial run). ``call_timeout_s`` bounds the wait for calls still running at the time limit
    (a thread stuck in a call is a daemon and is left behind); without it such a call blocks this function.
    """
    arrivals = np.asarray(arrivals, dtype=np.float64)
    settings = {"max_batch": max_batch, "max_delay_s": max_delay_s, "time_limit_s": time_limit_s}
    settings |= {"instances": len(instances), "stop_when_over": stop_when_over, "call_timeout_s": call_timeout_s}
    _check_run_args(instances, arrivals, settings)
    engine = _Engine(instances, arrivals, settings)
    # The engine allocates an object per batch; a full collection it triggers in a process that holds torch and timm
    # stalls the next call by up to hundreds of milliseconds, a pause of the harness, not of the model.
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        return _run(engine, instances, settings, time_limit_s, call_timeout_s)
    finally:
        if gc_was_enabled:
            gc.enable()


def _run(
    engine: _Engine,
    instances: Sequence[Instance],
    settings: dict[str, Any],
    time_limit_s: float,
    call_timeout_s: float | None,
) -> LoadResult:
    go = threading.Event()
    inline = call_timeout_s is None  # instance 0 runs on this thread (see below); else every instance has its own
    threads = [
        threading.Thread(target=engine.worker, args=(k, go), name=f"open-loop-{k}", daemon=True)
        for k in range(1 if inline else 0, len(instances))
    ]
    for t in threads:
        t.start()
    engine.t0 = clock()
    go.set()
    try:
        if inline:
            # The calling thread serves instance 0: a multi-threaded torch call made from a thread other than the
            # one that loaded the model ran at about half speed (docs/serving.md), and a server can serve from its
            # main thread as well.
            engine.worker(0, go)
        for t in threads:
            t.join(None if call_timeout_s is None else max(0.0, time_limit_s + call_timeout_s - engine.now()))
    except BaseException:  # Ctrl-C in the caller: let the workers finish their calls, then re-raise
        engine.halt("interrupted")
        for t in threads:
            t.join()
        raise
    if hung := [t.name for t in threads if t.is_alive()]:
        engine.halt("instance call timed out")
    result = engine.result(engine.now(), settings)
    if hung:
        raise OpenLoopError(f"instance calls on {hung} still running {call_timeout_s} s past the time limit", result)
    if engine.errors:
        raise OpenLoopError(f"{result.error}\n{engine.errors[0][2]}", result) from engine.errors[0][1]
    return result
