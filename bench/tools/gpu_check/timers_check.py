"""``python -m bench.tools.gpu_check.timers_check --out timers.json``: end-to-end and device-only timing of the same
calls.

Why it exists: a sweep on a GPU has read a device-only p50 (CUDA events) well above end-to-end (docs/gpu.md),
although the end-to-end call does strictly more work (the copy from pinned host memory and the layout
conversion). The sweep takes the two figures in different passes: end-to-end in short
slices interleaved with the fp32 process (:class:`~models.timers.WallTimer`, ``synchronize`` before and
after), then device-only back to back in ``finish()`` (:class:`~models.timers.CudaEventTimer` around
``predict`` on a batch already on the GPU). So the gap can come from the timers or from the passes; the passes of
:mod:`.timers_passes` separate the two, and :mod:`.timers_reading` says per configuration which explanation the
numbers support.

It builds the model with timm directly, so it depends on nothing of the project but its timers. Without CUDA (the
check's dry run) the same passes run on the CPU with ``perf_counter`` standing in for the events, and the file
says so. It is the timers step of ``make gpu-check``, and runs on its own as well.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.tools.gpu_check.timers_passes import Calls, one_pass_both_clocks, separate_passes, stats
from bench.tools.gpu_check.timers_reading import reading
from data.errors import ArgumentParser, InputError, run_cli

VARIANTS = ("fp32", "fp32-cl")
# Pass lengths per configuration: warm-up 1, the interleaved pass 2, four back-to-back passes 4, two sliced passes
# 2 each (their idle gaps double the wall time).
PASSES_PER_CONFIG = 11
IMPORT_AND_BUILD_S = 12.0  # what the budget keeps aside for importing torch/timm and building the models


def measure(calls: Calls, variant: str, batch: int, cuda: bool, seconds: float, least: int) -> dict[str, Any]:
    """One (variant, batch) configuration timed both ways, with its percentiles and its reading."""
    one_pass_both_clocks(calls, cuda, min(0.5, seconds), 3)  # warm-up (and cuDNN's first-call choices)
    both = one_pass_both_clocks(calls, cuda, 2 * seconds, least)
    separate = separate_passes(calls, cuda, seconds, least)
    cfg: dict[str, Any] = {
        "variant": variant,
        "batch": batch,
        "one_pass": {mode: {clock: stats(s, batch) for clock, s in clocks.items()} for mode, clocks in both.items()},
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
    return cfg


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
    reserve = min(IMPORT_AND_BUILD_S, budget_s / 3)
    seconds = max(0.1, (budget_s - reserve) / (len(VARIANTS) * len(batches) * PASSES_PER_CONFIG))
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
            result["configs"].append(measure(calls, variant, batch, cuda, seconds, least))
            result["elapsed_s"] = round(time.perf_counter() - started, 1)
            out.write_text(json.dumps(result, indent=1) + "\n")
        if cuda:
            torch.cuda.synchronize()
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["complete"] = True
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m bench.tools.gpu_check.timers_check",
        description="End-to-end and device-only timing of the same calls, into one JSON file.",
    )
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
