"""Wait until this process's own threads stop using the CPU, so the process timed next gets the whole machine.

Thread pools keep spinning after their last call, so that a call following soon does not pay a wake-up.
Measured on the 2-vCPU development VM: torch's OpenMP pool spins for about 5-15 ms after its last call,
ONNX Runtime's intra-op pool for about 55 ms (onnxruntime 1.32, defaults). The interleaved sweep paused
20 ms between slices, so an ORT variant's pool was still spinning on one of the two vCPUs when the fp32
reference started its slice. In six-recipe A/B sweeps, 20-60% of the
reference's batch-1 slices that followed an ORT variant's slice ran at 1.5-3x the reference's usual time,
against 0-3% of those that followed the reference's own slice or a torch variant's. The rounds then fell into
two clusters by who went first and the median round ratio fell between them, wherever the mix put it: ORT
speedups at batch 1 scattered from sweep to sweep (CoV up to 14%) and read too high (`ort` 9.6x against 8.0x
once the wait below was in place, mean of four sweeps each).

The deployed configuration is left alone (a user's ORT session spins too, and between back-to-back calls
that spinning is part of its latency). Instead each measurement process, after its timed calls, sleeps
until its own CPU time stops growing before it answers, so the idle side of a round is idle in fact.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_WAIT_S = 0.25  # a pool that never settles (a background thread at work) must not stall the sweep
SLOT_S = 0.005
BUSY_FRACTION = 0.2  # an idle process used 0-2% of a slot on the VM; one spinning thread uses 100%


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
