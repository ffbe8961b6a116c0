"""Wait until this process's own threads stop using the CPU, so the process timed next gets the whole machine.

Thread pools keep spinning after their last call, so that a call following soon does not pay a wake-up, and
ONNX Runtime's pool by default spins far longer than torch's. A pool still spinning when the other side of a
round starts its slice takes a CPU from it: that side's slice runs slow whenever it follows this one, the rounds
fall into two clusters by who went first, and the speedup reads wrong by however the order happened to mix
(docs/measurement.md).

The deployed configuration is left alone (a user's ORT session spins too, and between back-to-back calls
that spinning is part of its latency). Instead each measurement process, after its timed calls, sleeps
until its own CPU time stops growing before it answers, so the idle side of a round is idle in fact.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_WAIT_S = 0.25  # a pool that never settles (a background thread at work) must not stall the sweep
SLOT_S = 0.005
BUSY_FRACTION = 0.2  # an idle process uses a small fraction of a slot, one spinning thread all of it


def wait_until_idle(
    max_s: float = MAX_WAIT_S,
    slot_s: float = SLOT_S,
    busy_fraction: float = BUSY_FRACTION,
    cpu_clock: Callable[[], float] = time.process_time,
    sleep: Callable[[float], None] = time.sleep,
    wall_clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Sleep in ``slot_s`` steps until one step costs this process under ``busy_fraction`` of it in CPU time.

    ``time.process_time`` counts every thread of the process, so while this thread sleeps, what it measures
    is other threads spinning. Returns the seconds waited (at most about ``max_s``).
    """
    start = wall_clock()
    while wall_clock() - start < max_s:
        before = cpu_clock()
        sleep(slot_s)
        if cpu_clock() - before < busy_fraction * slot_s:
            break
    return wall_clock() - start
