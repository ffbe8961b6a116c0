"""What one configuration of the timers check says about device-only against end-to-end, in short sentences.

The candidate causes of device-only reading above end-to-end (docs/gpu.md) each leave their own mark: the
separate passes disagree while one pass agrees (the passes), the host's launch time fills the events' span
(launch-bound calls), the event timer reads more on the very same call (the timer), or the SM clock moved.
"""

from __future__ import annotations

from typing import Any


def reading(cfg: dict[str, Any], cuda: bool = True) -> list[str]:
    """The explanations the numbers of one configuration support (the first line: reproduced or not)."""
    if not cuda:
        return ["dry run: no CUDA events on this machine (perf_counter stands in); the figures only show the plumbing"]
    same, sep = cfg["one_pass"], cfg["separate_passes"]
    w_e2e, e_dev = same["end_to_end"]["wall"]["p50_ms"], same["device_only"]["events"]["p50_ms"]
    e_e2e, l_dev = same["end_to_end"]["events"]["p50_ms"], same["device_only"]["launch"]["p50_ms"]
    s_wall, s_ev = sep["wall_end_to_end"]["p50_ms"], sep["events_device_only"]["p50_ms"]
    s_ev_e2e = sep["events_end_to_end"]["p50_ms"]
    lines = []
    if s_ev > 1.05 * s_wall:
        lines.append(
            f"reproduced: as the sweep takes them (separate passes), device-only p50 {s_ev:.3f} ms > end-to-end "
            f"{s_wall:.3f} ms"
        )
    else:
        lines.append(
            f"not reproduced: separate passes give device-only p50 {s_ev:.3f} ms <= end-to-end {s_wall:.3f} ms (+5%)"
        )
    if e_dev <= 1.02 * w_e2e:
        lines.append(f"in one pass device-only {e_dev:.3f} ms <= end-to-end {w_e2e:.3f} ms, as it must be")
    else:
        lines.append(f"even in one pass device-only {e_dev:.3f} ms > end-to-end {w_e2e:.3f} ms: the timers differ")
    if e_dev > 0 and l_dev >= 0.8 * e_dev:
        lines.append(
            f"launch-bound: the host takes {l_dev:.3f} ms to enqueue a call whose events span {e_dev:.3f} ms, so "
            "the events measure the CPU's launch queue (the GPU waits for kernels), not only GPU work"
        )
    if e_dev > 0 and s_ev > 1.1 * e_dev:
        lines.append(
            f"pass effect: the separate CudaEventTimer pass read {100 * (s_ev / e_dev - 1):.0f}% above the same "
            "device-only call timed by events in the interleaved pass: the machine's state between passes "
            "(host speed, clocks), not the timer's definition, makes the difference"
        )
    if s_wall > 0 and s_ev_e2e > 1.05 * s_wall:
        lines.append(
            f"on the very same end-to-end call CudaEventTimer reads {s_ev_e2e:.3f} ms against WallTimer's "
            f"{s_wall:.3f} ms: the event timer adds time of its own"
        )
    return lines + _bursts_copy_and_clocks(cfg, s_wall, e_e2e - e_dev)


def _bursts_copy_and_clocks(cfg: dict[str, Any], s_wall: float, copy_ms: float) -> list[str]:
    """Bursts against sustained load, the cost of the copy (and layout change), and SM clocks between passes."""
    sep = cfg["separate_passes"]
    sliced_wall = (sep.get("wall_end_to_end_sliced") or {}).get("p50_ms")
    lines = []
    if sliced_wall and s_wall > 0 and abs(sliced_wall / s_wall - 1) > 0.1:
        faster = sliced_wall < s_wall
        lines.append(
            f"bursts vs sustained: end-to-end in 50 ms slices with idle gaps (as the sweep takes it) reads "
            f"{sliced_wall:.3f} ms, {abs(100 * (1 - sliced_wall / s_wall)):.0f}% {'below' if faster else 'above'} "
            f"the same calls back to back ({s_wall:.3f} ms, as the sweep takes device-only)"
        )
    what = "copy in + channels_last conversion" if cfg["variant"] == "fp32-cl" else "copy in"
    lines.append(f"{what}: {copy_ms:+.3f} ms by events (end-to-end minus device-only, one pass)")
    clocks = [p.get("sm_clock_mhz_before") for p in sep.values() if p.get("sm_clock_mhz_before")]
    if clocks and max(clocks) > 1.1 * min(clocks):
        lines.append(f"SM clock moved between passes: {min(clocks)}-{max(clocks)} MHz")
    return lines
