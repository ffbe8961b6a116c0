"""Thread counts and CPU pinning of a measurement process.

:func:`set_threads` gives every intra-op pool (torch, OpenMP, MKL, ONNX Runtime, OpenVINO) the same count before
anything runs; :func:`pin_threads` pins the threads once the variant is built: the calling thread on one CPU, the
rest beside it.

Why: on the 2-vCPU VM, with two intra-op threads, 20-87% of the 50 ms batch-1 slices of a pruned resnet10t
ran at about twice the time of the others (1.5 against 3 ms per call), in runs of many slices, in every
process; the Linux scheduler had put both threads of the pool on one CPU and took its time to part them.
A pinned pool cannot share a CPU with itself: with the calling thread on CPU 0 and the pool's other thread on
CPU 1, the share of such slices fell to 0-7% (three runs of three processes) and the spread of the per-round
ratios between two processes of the same variant fell from a log SD of 0.07-0.27 to 0.09-0.12.

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
    caller, rest = cpus[0], set(cpus[1:threads])
    me = threading.get_native_id()
    for tid in tids:
        try:
            os.sched_setaffinity(tid, {caller} if tid == me else rest)
        except OSError:  # the thread ended meanwhile
            continue
    others = ",".join(str(c) for c in sorted(rest))
    return f"calling thread on CPU {caller}, {len(tids) - 1} other threads on CPU {others}"
