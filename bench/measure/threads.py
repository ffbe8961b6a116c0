"""Thread counts and CPU pinning of a measurement process.

:func:`set_threads` gives every intra-op pool (torch, OpenMP, MKL, ONNX Runtime, OpenVINO) the same count before
anything runs; :func:`pin_threads` pins the threads once the variant is built: the calling thread on one CPU, the
rest beside it.

Why: the Linux scheduler can put two threads of one pool on the same CPU and take its time to part them; a
small model's slices then run at about twice their time, many in a row. A pinned pool cannot share a CPU with
itself, so such slices become rare and processes of the same variant agree more closely (docs/measurement.md).

This is what ``OMP_PROC_BIND=close`` does, but that binds the calling thread at the first parallel region,
during the build, and every process started later inherits its single CPU: Inductor's compile workers and
their compilers would share one CPU. Pinning by thread id after the build leaves the build alone, and covers
ONNX Runtime's own pool as well as OpenMP's. A deployment can get the same with ``OMP_PROC_BIND=close``
(torch) or ``session.intra_op_thread_affinities`` (ONNX Runtime).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

DISABLE_VAR = "OPTBENCH_PIN_THREADS"  # "0": leave the threads where the scheduler puts them
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPTBENCH_THREADS")


def set_threads(threads: int) -> None:
    """Same count for every intra-op pool (torch, OpenMP, MKL; ORT and OpenVINO read ``OPTBENCH_THREADS``)."""
    import torch

    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    # Pin the process to as many CPUs as it has threads: the scheduler then cannot move the measurement
    # around (one source of process-to-process spread); with threads == all CPUs this changes nothing.
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if threads < len(cpus):
            os.sched_setaffinity(0, cpus[:threads])
    except (AttributeError, OSError):
        pass


@contextmanager
def threads_restored() -> Iterator[None]:
    """Undo :func:`set_threads` on exit: for a process that measures in-process and then goes on (pytest).

    set_threads confines the calling thread to as many CPUs as threads, and everything started later inherits
    that, so without this one in-process job leaves the rest of a test session on one CPU.
    """
    import torch

    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    threads = torch.get_num_threads()
    saved = {var: os.environ.get(var) for var in THREAD_VARS}
    try:
        yield
    finally:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        torch.set_num_threads(threads)
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def pin_threads(threads: int) -> str | None:
    """Pin this process's threads for timing; returns what was done (for the result row), or None.

    The calling thread goes to the first allowed CPU, every other thread of the process to the next
    ``threads - 1`` CPUs. Nothing is pinned with one thread (set by :func:`set_threads`
    already), with more threads than allowed CPUs (they must share anyway), off Linux, or when
    ``OPTBENCH_PIN_THREADS=0``.
    """
    if os.environ.get(DISABLE_VAR, "1").strip() == "0" or threads < 2:
        return None
    try:
        cpus = sorted(os.sched_getaffinity(0))
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except (AttributeError, OSError):
        return None
    if threads > len(cpus):
        return None
    _PINNED_FROM[:] = cpus[:threads]
    caller, rest = cpus[0], set(cpus[1:threads])
    me = threading.get_native_id()
    for tid in tids:
        try:
            os.sched_setaffinity(tid, {caller} if tid == me else rest)
        except OSError:  # the thread ended meanwhile
            continue
    others = ",".join(str(c) for c in sorted(rest))
    return f"calling thread on CPU {caller}, {len(tids) - 1} other threads on CPU {others}"


_PINNED_FROM: list[int] = []  # the CPUs pin_threads spread the threads over


def unpin_threads() -> None:
    """Undo :func:`pin_threads`: every thread of the process may run on all the CPUs it was pinned across again.

    Threads a pinned thread starts inherit its one CPU, so several workers that each call a model (a serving
    measurement's instances) would all share it."""
    if not _PINNED_FROM:
        return
    for tid in (int(t) for t in os.listdir("/proc/self/task")):
        try:
            os.sched_setaffinity(tid, set(_PINNED_FROM))
        except OSError:
            continue
