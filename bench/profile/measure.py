"""Time a workload's loop with no profiler attached, and re-time it with each obvious input-pipeline fix.

Profilers add overhead (cProfile several times over in Python-heavy code), so the verdict's numbers come
from this plain ``perf_counter`` loop: each step is split into ``wait`` (``next(iterator)`` plus the copy to
the device) and ``compute``; GPU work is synchronized before each clock read.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from bench.profile.verdict import LoopTiming
from bench.profile.workloads import Batch, Workload, synchronize, with_loader_config

WORKER_COUNTS = (2, 4)


def worker_counts() -> tuple[int, ...]:
    """Worker counts worth trying here: 2 and 4, but not more workers than CPUs this process may use (min 2)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return tuple(n for n in WORKER_COUNTS if n <= max(2, cpus))


def epoch_start(loader: DataLoader) -> float:
    """Seconds to the first batch of a second epoch: worker start-up plus one batch (what ``persistent_workers`` saves).

    Measured on a copy of the loader over a subset of ``batch_size x workers`` samples, so the first epoch is
    drained completely (as in training) before the second starts: an abandoned epoch would make a persistent
    loader wait for its in-flight batches and look slower than it is.
    """
    workers = max(1, loader.num_workers)
    n = min(len(loader.dataset), int(loader.batch_size or 1) * workers)  # type: ignore[arg-type]
    probe = DataLoader(
        Subset(loader.dataset, range(n)),
        batch_size=loader.batch_size,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        persistent_workers=loader.persistent_workers,
        collate_fn=loader.collate_fn,
    )
    for _ in probe:  # first epoch, drained
        pass
    start = time.perf_counter()
    iterator = iter(probe)
    next(iterator)
    elapsed = time.perf_counter() - start
    for _ in iterator:
        pass
    del iterator, probe
    return elapsed


def time_loop(workload: Workload, steps: int, label: str | None = None, warmup: int = 1) -> LoopTiming:
    """Run ``steps`` timed steps of ``workload``; returns per-step wait and compute seconds and the epoch start.

    The first batch of the iterator and ``warmup`` compute calls on it are not timed (worker spawn, lazy
    init, optimizer state); the timed steps restart the loader when an epoch ends, as a training loop does.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    loader, compute, device = workload.loader, workload.compute, workload.device
    startup = epoch_start(loader) if isinstance(loader, DataLoader) else None
    iterator = iter(loader)
    batch = workload.move(next(iterator))
    for _ in range(warmup):
        if compute is not None:
            compute(batch)
    synchronize(device)

    waits: list[float] = []
    computes: list[float] = []
    for _ in range(steps):
        t0 = time.perf_counter()
        try:
            raw = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            raw = next(iterator)
        batch = workload.move(raw)
        synchronize(device)
        t1 = time.perf_counter()
        if compute is not None:
            compute(batch)
            synchronize(device)
        t2 = time.perf_counter()
        waits.append(t1 - t0)
        computes.append(t2 - t1 if compute is not None else 0.0)
    del iterator
    return LoopTiming(
        label or workload.name, tuple(waits), tuple(computes), workload.batch_size, startup, workload.unit
    )


def time_compute(compute: Callable[[Batch], None], batch: Batch, steps: int, device: str = "cpu") -> float:
    """Images per second of ``compute`` alone on one batch already in memory (after one warm-up call)."""
    compute(batch)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        compute(batch)
    synchronize(device)
    elapsed = time.perf_counter() - start
    return steps * int(batch[0].shape[0]) / elapsed if elapsed > 0 else float("inf")


@dataclass(frozen=True)
class Fix:
    """One change to try: loader settings, and/or channels_last for the model and its inputs."""

    label: str
    num_workers: int | None = None
    pin_memory: bool | None = None
    persistent_workers: bool | None = None
    channels_last: bool = False


def _apply(workload: Workload, fix: Fix) -> Workload:
    loader = with_loader_config(workload.loader, fix.num_workers, fix.pin_memory, fix.persistent_workers)
    memory_format = torch.channels_last if fix.channels_last else workload.memory_format
    return dataclasses.replace(workload, loader=loader, memory_format=memory_format, _stream=None)


def _measure_fix(workload: Workload, fix: Fix, steps: int, model: nn.Module | None) -> LoopTiming:
    trial = _apply(workload, fix)
    if fix.channels_last and model is not None:
        model.to(memory_format=torch.channels_last)
    try:
        return time_loop(trial, steps, fix.label)
    finally:
        if fix.channels_last and model is not None:
            model.to(memory_format=torch.contiguous_format)
        trial.close()


def try_fixes(
    workload: Workload,
    steps: int,
    base: LoopTiming,
    model: nn.Module | None = None,
    log: Callable[[str], None] | None = None,
) -> list[LoopTiming]:
    """Re-time ``workload`` with the obvious input-pipeline fixes, each measured, and return every trial.

    First more workers (2, 4: no more than the CPUs available); then, on top of the worker count that beat
    ``base`` most: ``pin_memory`` (CUDA only: it speeds host-to-GPU copies and does nothing on CPU),
    ``persistent_workers`` (shows in the epoch-start time) and, when ``model`` is given (the train target),
    channels_last for the model and its inputs.
    """
    trials: list[LoopTiming] = []
    base_workers = workload.loader.num_workers

    def run(fix: Fix) -> LoopTiming:
        if log:
            log(f"  trying {fix.label} ...")
        timing = _measure_fix(workload, fix, steps, model)
        trials.append(timing)
        return timing

    counts = [n for n in worker_counts() if n != base_workers]
    worker_trials = [run(Fix(f"num_workers={n}", num_workers=n)) for n in counts]
    best_workers, best_rate = base_workers, base.images_per_s
    for n, timing in zip(counts, worker_trials, strict=True):
        if timing.images_per_s > best_rate:
            best_workers, best_rate = n, timing.images_per_s

    def prefixed(workers: int, change: str) -> str:
        return f"num_workers={workers} + {change}" if workers != base_workers else change

    # persistent_workers needs workers: use the best count, or the first one tried if none beat the base.
    loader_workers = best_workers if best_workers > 0 else (counts[0] if counts else 0)
    if torch.device(workload.device).type == "cuda" and workload.move_to_device and not workload.loader.pin_memory:
        run(Fix(prefixed(best_workers, "pin_memory"), num_workers=best_workers, pin_memory=True))
    if loader_workers > 0 and not workload.loader.persistent_workers:
        run(Fix(prefixed(loader_workers, "persistent_workers"), num_workers=loader_workers, persistent_workers=True))
    if model is not None and workload.compute is not None and workload.memory_format is None:
        run(Fix(prefixed(best_workers, "channels_last"), num_workers=best_workers, channels_last=True))
    return trials
