"""What one request costs when it reaches an idle process, against the same call back to back.

A server under light traffic is idle between requests, and on many machines the next call is slower than a call
that follows another at once: the process's weights left the shared cache while other work ran, idle cores
dropped their clock or were descheduled by the hypervisor, the runtime's worker threads went to sleep (measured
in docs/serving.md, "Why an isolated request is slower"). The batch-1 latency scenario times calls back to back,
so this is the figure that says why a tight p99 bound holds far less traffic than the back-to-back time suggests;
a deployed service pays it too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

IDLE_GAP_S = 0.1  # idle time before each isolated call: about the gap between requests at 10 req/s
CALLS = 12
NOTABLE = 1.25  # an isolated call this many times slower than back to back is worth a note on the row


def idle_cost(
    call: Callable[[], Any],
    calls: int = CALLS,
    gap_s: float = IDLE_GAP_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median milliseconds of ``call()`` back to back and after ``gap_s`` of sleep, ``calls`` of each."""
    call()  # the back-to-back series starts warm

    def timed_once() -> float:
        start = clock()
        call()
        return (clock() - start) * 1e3

    busy = [timed_once() for _ in range(calls)]
    idle = []
    for _ in range(calls):
        sleep(gap_s)
        idle.append(timed_once())
    return {"busy_p50_ms": statistics.median(busy), "idle_p50_ms": statistics.median(idle), "gap_s": gap_s}


def idle_note(cost: dict[str, float] | None) -> str | None:
    """A sentence for the serving row when an isolated request is markedly slower than back to back."""
    if not cost:
        return None
    busy, idle = cost.get("busy_p50_ms"), cost.get("idle_p50_ms")
    if not busy or not idle or idle < NOTABLE * busy:
        return None
    return (
        f"a request to an idle process took {idle:.3g} ms (p50, after {cost['gap_s'] * 1e3:.0f} ms idle) against "
        f"{busy:.3g} ms back to back: light traffic pays the difference"
    )
