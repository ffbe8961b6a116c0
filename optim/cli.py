"""What every producer command (``python -m optim.quantize|prune|compile|onnx|tensorrt``) shares: the checkpoint
options, one run configuration, the output folder, an honest quick speed check, and saving without losing what
was there before.

No producer imports another producer's command line; they all come here.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.cli_args import add_load_arguments, load_spec_from_args, placeholder_note
from models.errors import ArgumentParser, InputError, MissingDependencyError

QUICK_CHECK_NOTE = (
    "rough in-process check at batch 1 (both warmed up, timed in alternating blocks); `python -m bench` measures "
    "it properly"
)


def add_producer_arguments(p: ArgumentParser, data: bool = True, device: bool = True, calib: bool = True) -> None:
    """The checkpoint options and what every producer takes besides its own options."""
    add_load_arguments(p, random_init=False)
    if data:
        p.add_argument("--data", help="data spec (default: the checkpoint's own, e.g. digits)")
        p.add_argument("--data-dir", help="root for timm dataset names such as torch/gtsrb")
        p.add_argument("--skip-bad-images", action="store_true", help="leave unreadable images out instead of stopping")
    if calib:
        p.add_argument("--calib-size", type=int, default=None, help="calibration images from train (default 512)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset and fine-tuning")
    if device:
        p.add_argument("--device", default="cpu", help="where the variant runs: cpu (default) or cuda")
    p.add_argument("--quick", action="store_true", help="short fine-tuning and checks (smoke runs)")
    p.add_argument("--out", help="variant directory (default: results/variants/<arch>-<recipe>)")


@dataclass
class ProducerRun:
    """A producer command's run: its configuration, the loaded checkpoint, and where the variant goes."""

    config: Any  # bench.config.RunConfig
    loaded: Any  # models.LoadedModel
    out: Path

    def context(self, workdir: Path, bundle: Any = None, options: dict[str, Any] | None = None):
        from optim.context import build_context

        return build_context(self.config, self.loaded, workdir, bundle, {"progress": True, **(options or {})})


def producer_run(args: Any, recipe: str, device: str | None = None, needs_data: bool = False) -> ProducerRun:
    """Validate the options, load the checkpoint once and build the run configuration of ``recipe``."""
    import models
    from bench.config import RunConfig
    from bench.measure.fingerprint import default_threads
    from bench.measure.timing import default_scenarios
    from optim.recipe import parse

    device = device or getattr(args, "device", "cpu")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r}; choose one of: cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise MissingDependencyError("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)")
    calib = getattr(args, "calib_size", None)
    if calib is not None and calib <= 0:
        raise InputError(f"--calib-size must be positive, got {calib}")
    parse(recipe)  # a bad recipe is one line before any work
    loaded = models.load(load_spec_from_args(args))
    if note := placeholder_note(loaded.info):
        print(note, file=sys.stderr)
    import data

    spec = data.resolve_spec(getattr(args, "data", None) or loaded.info.data_spec)
    if needs_data and not spec:
        raise InputError("this checkpoint records no data spec; pass --data (digits, a folder, torch/<name>)")
    if spec and (needs_data or getattr(args, "data", None)):
        report = data.check_spec(
            spec, loaded.info, getattr(args, "data_dir", None), getattr(args, "skip_bad_images", False)
        )
        if report:
            print(report, file=sys.stderr)
    threads = default_threads()
    torch.set_num_threads(threads)
    cfg = RunConfig(
        load=load_spec_from_args(args),
        recipes=(recipe,),
        scenarios=default_scenarios(True, device),
        device=device,
        data_spec=spec,
        data_dir=data.resolve_dir(getattr(args, "data_dir", None)),
        skip_bad_images=getattr(args, "skip_bad_images", False),
        threads=threads,
        seed=args.seed,
        calib_size=calib or 512,
        quick=args.quick,
        run_id="producer",
    ).validated()
    return ProducerRun(cfg, loaded, out_dir(args.out, loaded.info.arch, recipe))


def out_dir(out: str | None, arch: str, recipe: str) -> Path:
    """``--out``, or ``results/variants/<arch>-<recipe>``; an existing folder that is not a variant is refused."""
    from models.paths import results_dir

    if out:
        from models.paths import absolute

        path = absolute(out)
    else:
        safe = "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in f"{arch}-{recipe}")[:100]
        path = results_dir() / "variants" / safe
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / "manifest.json").is_file())):
        raise InputError(f"--out {path} exists and is not a variant directory; choose another path")
    return path


def scratch_dir(out: Path) -> Path:
    """A scratch folder beside ``out`` (same filesystem, so the final move is a rename)."""
    parent = out.parent if out.parent.exists() else None
    return Path(tempfile.mkdtemp(prefix=".optbench-", dir=parent))


def save_atomically(variant: Any, out: Path, scratch: Path) -> Path:
    """Write the variant to ``out`` only once it is complete; a previous variant there is replaced, never mixed."""
    staging = scratch / "staging"
    variant.save(staging)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.rename(scratch / "previous")
    shutil.move(str(staging), str(out))
    return out


def quick_check(reference: Any, variant: Any, example: torch.Tensor, blocks: int = 10) -> dict[str, Any]:
    """Batch-1 p50 of the eager FP32 reference and the variant, both warmed up, timed in alternating blocks.

    Rough on purpose (a few seconds, in the producer's own process); the two sides see the same machine moments,
    so the ratio does not compare a cold first call with a warm variant.
    """
    import numpy as np

    from bench.measure.timing import ScenarioConfig, WallTimer, time_calls, warm_up

    timer = WallTimer(None)
    warm = ScenarioConfig("check", 1, warmup_iters=5, warmup_seconds=0.3, min_iters=5, min_seconds=0.1, max_seconds=30)
    sides = {"fp32": reference, "variant": variant}
    calls = {}
    for name, v in sides.items():
        ready = v.prepare_input(example)
        calls[name] = lambda v=v, ready=ready: v.predict(ready)
        warm_up(calls[name], warm, timer)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for block in range(blocks):
        order = list(sides) if block % 2 == 0 else list(reversed(list(sides)))
        for name in order:
            samples[name] += time_calls(calls[name], timer, 5, 0.05, 5.0)
    p50 = {name: float(np.median(s)) * 1e3 for name, s in samples.items()}
    return {
        "fp32_p50_ms": round(p50["fp32"], 4),
        "variant_p50_ms": round(p50["variant"], 4),
        "speedup": round(p50["fp32"] / p50["variant"], 3) if p50["variant"] > 0 else None,
        "note": QUICK_CHECK_NOTE,
    }


def quick_check_line(check: dict[str, Any], threads: int) -> str:
    return (
        f"  latency  {check['fp32_p50_ms']:.3f} ms -> {check['variant_p50_ms']:.3f} ms p50 at batch 1 "
        f"({check['speedup']:.2f}x vs eager FP32, {threads} threads; {QUICK_CHECK_NOTE})"
    )
