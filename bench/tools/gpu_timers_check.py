"""``python -m bench.tools.gpu_timers_check --out timers.json``: end-to-end and device-only timing of the same calls.

Why it exists: on a lent H200 the sweep's device-only p50 (CUDA events) for ``fp32-cl`` resnet50 at batch 1 read
8.45 ms against 6.32 ms end-to-end, although the end-to-end call does strictly more work (the copy from pinned
host memory and the layout conversion). The sweep takes the two figures in different passes: end-to-end in short
slices interleaved with the fp32 process (:class:`~models.timers.WallTimer`, ``synchronize`` before and
after), then device-only back to back in ``finish()`` (:class:`~models.timers.CudaEventTimer` around
``predict`` on a batch already on the GPU). So the gap can come from the timers or from the passes. This module
separates the two:

- **one pass, both clocks**: every call is timed by ``perf_counter`` (synchronize before and after) and by CUDA
  events recorded around the very same call, alternating end-to-end and device-only calls; ``launch_ms`` is the
  host time until the call returned, before the trailing synchronize (how long the CPU took to enqueue it);
- **separate passes, the project's timers**, in the sweep's order: WallTimer on the end-to-end call, then
  CudaEventTimer on the device-only call, plus the two crossings (events on end-to-end, wall on device-only);
- the GPU's SM clock before each pass (``nvidia-smi``), since clocks moving between passes would also explain it.

A short reading per configuration says which explanation the numbers support. It builds the model with timm
directly and copies what the sweep's prepare/predict do (``.to(device, non_blocking=True)``, channels_last for
``fp32-cl``, ``inference_mode``), so it depends on nothing of the project but its timers. Without CUDA (the
check's dry run) the same passes run on the CPU with ``perf_counter`` standing in for the events, and the file
says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data.errors import ArgumentParser, InputError, run_cli

VARIANTS = ("fp32", "fp32-cl")
# Pass lengths per configuration: warm-up 1, the interleaved pass 2, four back-to-back passes 4, two sliced passes
# 2 each (their idle gaps double the wall time).
PASSES_PER_CONFIG = 11
SLICE_S, GAP_S = 0.05, 0.05  # the sweep's end-to-end slices: 50 ms each, the other process timed in between
IMPORT_AND_BUILD_S = 12.0  # what the budget keeps aside for importing torch/timm and building the models


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
    from models.timers import summarize

    out = summarize(list(samples_s), batch)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


class Calls:
    """One configuration: the end-to-end call (pinned host batch in) and the device-only call (batch on the device)."""

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
    from models.timers import time_calls

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
    from models.timers import CudaEventTimer, WallTimer, cuda_synchronize, time_calls

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


def reading(cfg: dict[str, Any], cuda: bool = True) -> list[str]:
    """What the numbers of one configuration say about device-only against end-to-end (short sentences)."""
    if not cuda:
        return ["dry run: no CUDA events on this machine (perf_counter stands in); the figures only show the plumbing"]
    same, sep = cfg["one_pass"], cfg["separate_passes"]
    w_e2e, e_dev = same["end_to_end"]["wall"]["p50_ms"], same["device_only"]["events"]["p50_ms"]
    e_e2e, l_dev = same["end_to_end"]["events"]["p50_ms"], same["device_only"]["launch"]["p50_ms"]
    s_wall, s_ev = sep["wall_end_to_end"]["p50_ms"], sep["events_device_only"]["p50_ms"]
    s_ev_e2e = sep["events_end_to_end"]["p50_ms"]
    sliced_wall = (sep.get("wall_end_to_end_sliced") or {}).get("p50_ms")
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
    if sliced_wall and s_wall > 0 and abs(sliced_wall / s_wall - 1) > 0.1:
        faster = sliced_wall < s_wall
        lines.append(
            f"bursts vs sustained: end-to-end in 50 ms slices with idle gaps (as the sweep takes it) reads "
            f"{sliced_wall:.3f} ms, {abs(100 * (1 - sliced_wall / s_wall)):.0f}% {'below' if faster else 'above'} "
            f"the same calls back to back ({s_wall:.3f} ms, as the sweep takes device-only)"
        )
    what = "copy in + channels_last conversion" if cfg["variant"] == "fp32-cl" else "copy in"
    lines.append(f"{what}: {e_e2e - e_dev:+.3f} ms by events (end-to-end minus device-only, one pass)")
    clocks = [p.get("sm_clock_mhz_before") for p in sep.values() if p.get("sm_clock_mhz_before")]
    if clocks and max(clocks) > 1.1 * min(clocks):
        lines.append(f"SM clock moved between passes: {min(clocks)}-{max(clocks)} MHz")
    return lines


def run(
    device: str,
    model_name: str,
    img: int,
    num_classes: int,
    batches: Sequence[int],
    budget_s: float,
    out: Path,
    min_calls: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Every (variant, batch) configuration timed both ways; the per-pass seconds are sized to fit ``budget_s``.

    ``min_calls`` per pass at batch 1 (a third of it, at least 3, at larger batches). The file is rewritten after
    each configuration, so a run stopped at its deadline still leaves what it measured.
    """
    started = time.perf_counter()
    import timm
    import torch

    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise InputError("--device cuda, but torch sees no CUDA device")
    configs = [(v, b) for v in VARIANTS for b in batches]
    reserve = min(IMPORT_AND_BUILD_S, budget_s / 3)
    seconds = max(0.1, (budget_s - reserve) / (len(configs) * PASSES_PER_CONFIG))
    result: dict[str, Any] = {
        "what": "end-to-end (perf_counter + synchronize) and device-only (CUDA events) timings of the same calls",
        "device": device,
        "dry_run": not cuda,
        "events_clock": "cuda_events" if cuda else "perf_counter stand-in (no CUDA on this machine: dry run)",
        "model": model_name,
        "img_size": img,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "seconds_per_pass": round(seconds, 3),
        "min_calls": min_calls,
        "complete": False,
        "configs": [],
    }
    for variant in VARIANTS:
        torch.manual_seed(seed)  # the same random weights for both variants
        model = timm.create_model(model_name, pretrained=False, num_classes=num_classes).eval().to(device)
        if variant == "fp32-cl":
            model = model.to(memory_format=torch.channels_last)
        for batch in batches:
            calls = Calls(torch, model, variant, batch, img, device, seed)
            least = min_calls if batch == 1 else max(3, min_calls // 3)
            one_pass_both_clocks(calls, cuda, min(0.5, seconds), 3)  # warm-up (and cuDNN's first-call choices)
            both = one_pass_both_clocks(calls, cuda, 2 * seconds, least)
            separate = separate_passes(calls, cuda, seconds, least)
            cfg: dict[str, Any] = {
                "variant": variant,
                "batch": batch,
                "one_pass": {
                    mode: {clock: stats(s, batch) for clock, s in clocks.items()} for mode, clocks in both.items()
                },
                "separate_passes": {
                    name: {
                        **stats(p["samples_s"], batch),
                        "timer": p["timer"],
                        "sliced": p["sliced"],
                        "sm_clock_mhz_before": p["sm_clock_mhz_before"],
                    }
                    for name, p in separate.items()
                },
            }
            cfg["reading"] = reading(cfg, cuda)
            result["configs"].append(cfg)
            result["elapsed_s"] = round(time.perf_counter() - started, 1)
            out.write_text(json.dumps(result, indent=1) + "\n")
        if cuda:
            torch.cuda.synchronize()
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["complete"] = True
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m bench.tools.gpu_timers_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu (the check's dry run)")
    parser.add_argument("--model", default="resnet50", help="timm architecture (random weights)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--batches", default="1,128", help="comma-separated batch sizes (default 1,128)")
    parser.add_argument("--budget-s", type=float, default=45.0, help="seconds the whole check may take (default 45)")
    parser.add_argument("--min-calls", type=int, default=20, help="calls per pass at batch 1, at least (default 20)")
    args = parser.parse_args(argv)
    if args.device not in ("cuda", "cpu"):
        raise InputError(f"--device must be cuda or cpu, got {args.device!r}")
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        raise InputError(f"--batches must be comma-separated integers, got {args.batches!r}") from None
    if not batches or min(batches) < 1:
        raise InputError(f"--batches must name positive batch sizes, got {args.batches!r}")
    if args.img_size < 8 or args.num_classes < 1 or args.budget_s <= 0 or args.min_calls < 1:
        raise InputError("--img-size must be >= 8, --num-classes >= 1, --budget-s > 0 and --min-calls >= 1")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = run(args.device, args.model, args.img_size, args.num_classes, batches, args.budget_s, out, args.min_calls)
    for cfg in result["configs"]:
        print(f"{cfg['variant']} b{cfg['batch']}: " + "; ".join(cfg["reading"]))
    print(f"timers: {out} ({result['elapsed_s']} s)")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run_cli(main)
