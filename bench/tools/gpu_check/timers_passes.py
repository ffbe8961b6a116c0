"""The timing passes of the timers check: both clocks around the very same calls, then the project's timers apart.

- **one pass, both clocks**: every call is timed by ``perf_counter`` (synchronize before and after) and by CUDA
  events recorded around the very same call, alternating end-to-end and device-only calls; ``launch`` is the
  host time until the call returned, before the trailing synchronize (how long the CPU took to enqueue it);
- **separate passes, the project's timers** (:mod:`models.timers`), in the sweep's order: WallTimer on the
  end-to-end call, then CudaEventTimer on the device-only call, plus the two crossings, back to back and in 50 ms
  slices with idle gaps; the GPU's SM clock is read before each pass.

Without CUDA (the check's dry run) ``perf_counter`` stands in for the events.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from models.timers import CudaEventTimer, WallTimer, cuda_synchronize, summarize, time_calls

SLICE_S, GAP_S = 0.05, 0.05  # the sweep's end-to-end slices: 50 ms each, the other process timed in between


def sm_clock_mhz(index: int = 0) -> int | None:
    """The GPU's current SM clock, or None without nvidia-smi (it is read between passes, never inside one)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=clocks.sm", "--format=csv,noheader,nounits", "-i", str(index)],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return int(float(out.splitlines()[0]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def stats(samples_s: Sequence[float], batch: int) -> dict[str, Any]:
    """The project's percentiles (``summarize``), rounded for a file a person reads."""
    out = summarize(list(samples_s), batch)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


class Calls:
    """One configuration: the end-to-end call (pinned host batch in) and the device-only call (batch on the device).

    It copies what the sweep's prepare/predict do (``.to(device, non_blocking=True)``, channels_last for
    ``fp32-cl``, ``inference_mode``), so the calls are the sweep's without depending on its code.
    """

    def __init__(self, torch: Any, model: Any, variant: str, batch: int, img: int, device: str, seed: int) -> None:
        self.torch = torch
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if variant == "fp32-cl" else None
        host = torch.randn(batch, 3, img, img, generator=torch.Generator().manual_seed(seed))
        self.host = host.pin_memory() if device == "cuda" else host  # as the sweep's host batch
        self.model = model
        self.ready = self.prepare(self.host)

    def prepare(self, x: Any) -> Any:
        x = x.to(self.device, non_blocking=True)
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        return x

    def predict(self, x: Any) -> Any:
        with self.torch.inference_mode():
            return self.model(x)

    def end_to_end(self) -> Any:
        return self.predict(self.prepare(self.host))

    def device_only(self) -> Any:
        return self.predict(self.ready)


def one_pass_both_clocks(calls: Calls, cuda: bool, seconds: float, min_calls: int) -> dict[str, dict[str, list[float]]]:
    """Alternate end-to-end and device-only calls; time each one with perf_counter and with events at once.

    Per call: synchronize, start the clock, record the start event, call, note the host time (``launch``), record
    the end event, synchronize, stop the clock. The events are created per call, as CudaEventTimer does.
    """
    torch = calls.torch
    modes: dict[str, Callable[[], Any]] = {"end_to_end": calls.end_to_end, "device_only": calls.device_only}
    out = {mode: {"wall": [], "events": [], "launch": []} for mode in modes}
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    start = time.perf_counter()
    done = 0
    while done < min_calls or time.perf_counter() - start < seconds:
        for mode, fn in modes.items() if done % 2 == 0 else reversed(list(modes.items())):
            sync()
            if cuda:
                ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0 = time.perf_counter()
            if cuda:
                ev0.record()
            fn()
            t_launch = time.perf_counter()
            if cuda:
                ev1.record()
            sync()
            t1 = time.perf_counter()
            out[mode]["wall"].append(t1 - t0)
            out[mode]["launch"].append(t_launch - t0)
            # Without CUDA there are no events: the host's own clock up to the return stands in (labelled so).
            out[mode]["events"].append(ev0.elapsed_time(ev1) / 1e3 if cuda else t_launch - t0)
        done += 1
        if time.perf_counter() - start > 10 * max(seconds, 1.0):
            break
    return out


def in_slices(fn: Callable[[], Any], timer: Any, seconds: float, min_calls: int) -> list[float]:
    """Calls timed the way the sweep times end-to-end: 50 ms slices, each after one untimed call, idle between."""
    samples: list[float] = []
    start = time.perf_counter()
    while (sum(samples) < seconds or len(samples) < min_calls) and time.perf_counter() - start < 10 * seconds + 5:
        fn()
        samples += time_calls(fn, timer, 1, SLICE_S, max(1.0, 4 * SLICE_S))
        time.sleep(GAP_S)
    return samples


def separate_passes(calls: Calls, cuda: bool, seconds: float, min_calls: int) -> dict[str, Any]:
    """The project's timers, one pass each, in the sweep's order (end-to-end first, device-only after).

    Back to back, as ``finish()`` times device-only; then the same two in 50 ms slices with idle gaps, as the
    interleaved rounds time end-to-end: bursts and sustained load may not run at the same speed.
    """
    wall = WallTimer(cuda_synchronize if cuda else None)
    events = CudaEventTimer() if cuda else WallTimer(None)
    plan = (
        ("wall_end_to_end", wall, calls.end_to_end, False),  # the sweep's end-to-end timer
        ("events_device_only", events, calls.device_only, False),  # the sweep's device-only figure (finish())
        ("events_end_to_end", events, calls.end_to_end, False),
        ("wall_device_only", wall, calls.device_only, False),
        ("wall_end_to_end_sliced", wall, calls.end_to_end, True),  # the sweep's end-to-end figure, as it is taken
        ("events_device_only_sliced", events, calls.device_only, True),
    )
    out: dict[str, Any] = {}
    for name, timer, fn, sliced in plan:
        clock = sm_clock_mhz() if cuda else None
        time_calls(fn, timer, 3, min(0.2, seconds / 4), 30.0)  # a few warm calls first
        if sliced:
            samples = in_slices(fn, timer, seconds, min_calls)
        else:
            samples = time_calls(fn, timer, min_calls, seconds, max(30.0, 4 * seconds))
        out[name] = {"samples_s": samples, "sm_clock_mhz_before": clock, "timer": timer.method, "sliced": sliced}
    return out
