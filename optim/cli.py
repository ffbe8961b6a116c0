"""What every producer command (``python -m optim.quantize|prune|compile|onnx|tensorrt``) shares: the checkpoint
options, one run configuration, the output folder, an honest quick speed check, and saving without losing what
was there before.

No producer imports another producer's command line; they all come here.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data.errors import ArgumentParser, InputError, MissingDependencyError
from optim.context import BuildSettings

QUICK_CHECK_NOTE = (
    "rough in-process check at batch 1 (both warmed up, timed in alternating blocks); `python -m bench` measures "
    "it properly"
)


def add_producer_arguments(p: ArgumentParser, data: bool = True, device: bool = True, calib: bool = True) -> None:
    """The checkpoint options and what every producer takes besides its own options (:mod:`optim.options`)."""
    from optim.options import add_build_arguments, add_checkpoint_arguments

    add_checkpoint_arguments(p, random_init=False, data=data)
    add_build_arguments(p, device=device, calib=calib)
    p.add_argument(
        "--out",
        help="variant directory (default: <results>/variants/<checkpoint name>-<recipe>)",
    )
    p.add_argument(
        "--force", action="store_true", help="replace a variant in --out built from another checkpoint or recipe"
    )


@dataclass
class ProducerRun:
    """A producer command's run: its build settings, the loaded checkpoint, and where the variant goes."""

    config: BuildSettings
    loaded: Any  # models.LoadedModel
    out: Path

    def context(self, workdir: Path, bundle: Any = None, options: dict[str, Any] | None = None):
        from optim.context import build_context

        return build_context(self.config, self.loaded, workdir, bundle, {"progress": True, **(options or {})})


def producer_run(args: Any, recipe: str, device: str | None = None, needs_data: bool = False) -> ProducerRun:
    """Check the options (the same checks as every command), load the checkpoint once, settle the build settings."""
    from optim.options import check_build_options, load_checked, settings_from_args
    from optim.recipe import parse

    if device is not None:
        args.device = device
    check_build_options(args)
    reason = parse(recipe).unavailable_reason(
        getattr(args, "device", "cpu") or "cpu"
    )  # a bad recipe or a missing backend: one line, no work
    if reason:
        raise MissingDependencyError(reason)
    _, loaded = load_checked(args)
    settings = settings_from_args(args, loaded, check_data=needs_data or bool(getattr(args, "data", None)))
    torch.set_num_threads(settings.threads)
    source = loaded.info.source if loaded.info.has_weights else None
    name = Path(source).name.split(".")[0] if source else loaded.info.arch
    path = out_dir(args.out, name, recipe)
    _check_replaces(path, loaded.info, recipe, bool(getattr(args, "force", False)))
    return ProducerRun(settings, loaded, path)


def out_dir(out: str | None, name: str, recipe: str) -> Path:
    """``--out``, or ``results/variants/<name>-<recipe>`` (``name``: the checkpoint file's stem, so two checkpoints of
    one architecture get folders of their own; the architecture for random init); an existing folder that is not a
    variant is refused."""
    from data.paths import results_dir

    if out:
        from data.paths import absolute

        path = absolute(out)
    else:
        safe = "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in f"{name}-{recipe}")[:100]
        path = results_dir() / "variants" / safe
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / "manifest.json").is_file())):
        raise InputError(f"--out {path} exists and is not a variant directory; choose another path")
    return path


def _check_replaces(path: Path, info: Any, recipe: str, force: bool) -> None:
    """A rebuild of the same recipe from the same checkpoint replaces its variant; a variant of another checkpoint or
    recipe is someone's work and is replaced only with --force."""
    import json

    manifest = path / "manifest.json"
    if force or not manifest.is_file():
        return
    try:
        old = json.loads(manifest.read_text())
        source = old.get("source") or {}
        same = old.get("recipe") == recipe and source.get("sha256") == info.sha256 and source.get("arch") == info.arch
        what = f"{old.get('recipe')} of {source.get('checkpoint') or source.get('arch')}"
    except (OSError, ValueError, AttributeError):
        same, what = False, "a variant whose manifest cannot be read"
    if not same:
        raise InputError(f"--out {path} holds {what}; pass --force to replace it, or choose another --out")


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
    from models.timers import WallTimer, alternating_p50

    def call(v: Any):
        ready = v.prepare_input(example)
        return lambda: v.predict(ready)

    calls = {"reference": call(reference), "variant": call(variant)}
    p50 = {name: seconds * 1e3 for name, seconds in alternating_p50(calls, WallTimer(None), blocks).items()}
    return {
        "fp32_p50_ms": round(p50["reference"], 4),
        "variant_p50_ms": round(p50["variant"], 4),
        "speedup": round(p50["reference"] / p50["variant"], 3) if p50["variant"] > 0 else None,
        "note": QUICK_CHECK_NOTE,
    }


def quick_check_line(check: dict[str, Any], threads: int) -> str:
    """The producer's own timing, naming the CPU it ran on (the figure means nothing on another machine)."""
    from models.machine import cpu_info

    return (
        f"  latency  {check['fp32_p50_ms']:.3f} ms -> {check['variant_p50_ms']:.3f} ms p50 at batch 1 "
        f"({check['speedup']:.2f}x vs eager FP32, {threads} threads of {cpu_info().get('cpu_model') or 'this CPU'}; "
        f"{QUICK_CHECK_NOTE})"
    )
