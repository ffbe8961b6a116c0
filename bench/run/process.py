"""What a measurement process does with its job: load the checkpoint, build (or load) the variant, make its
first call, measure accuracy, save it, and describe it in the fields of a result row.

Every measurement process is a :mod:`bench.run.server`; this module is the work behind its commands. The job is
a :class:`~bench.config.Job`: the run configuration plus one recipe, so the process loads the checkpoint exactly
as the command the user typed did.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import Job
from models.timers import WallTimer, cuda_synchronize
from optim.registry import REFERENCE

SCHEMA_VERSION = 2


def safe_name(text: str, limit: int = 80) -> str:
    """A recipe (``prune(0.5)+ort-int8``) as a file or folder name: every path needs the same spelling."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:limit]


def variant_dir(job: Job) -> Path:
    return Path(job.run_dir) / "variants" / safe_name(job.recipe) / job.device


def reference_path(job: Job, info: Any) -> Path:
    """Where the FP32 predictions on val are cached for agreement (shared by every variant of a run)."""
    key = (info.sha256 or info.arch)[:16]
    size = info.input_size[1]
    spec = (job.config.data_spec or "none").replace("/", "_").replace(os.sep, "_")[-40:]
    return Path(job.run_dir) / "reference" / f"fp32-{key}-{spec}-{size}.npy"


def predictions_path(run_dir: str | Path, recipe: str, device: str) -> Path:
    """Where a variant's top-1 prediction for every val image is kept (int64, val order): an exported copy of the
    variant is checked against it image by image."""
    return Path(run_dir) / "predictions" / f"{safe_name(recipe)}-{device}.npy"


def _save_array(path: Path, array: Any) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class Prepared:
    """A built variant in this process, ready to be timed: what measuring and finishing need."""

    job: Job
    variant: Any
    info: Any
    ctx: Any
    workdir: Path
    first_ms: float
    accuracy: dict[str, Any] | None = None
    saved: bool = False  # the variant directory holds this variant (saved here, or loaded from it)
    eval_batch: int | None = None  # accuracy runs at this batch: the largest one timed, so nothing compiles again
    pinning: str | None = None  # how the threads were pinned for timing (bench.measure.threads), None if not

    @property
    def spec(self) -> str | None:
        return self.ctx.data_spec


def prepare(job: Job, load_dir: str | Path | None = None) -> Prepared:
    """Load the checkpoint, build the job's variant and make its first call (timed apart from steady state).

    With ``load_dir`` the variant is not built but loaded from a directory another process saved it to
    (``Variant.load``), as a deployment loads its artifact: that is how a sweep starts a second measurement
    process of the same variant without paying for the build again. Where the saved form is a file of its own
    runtime (ONNX, OpenVINO IR, an exported program), the source checkpoint is not read and timm not imported.
    """
    import torch

    import models
    from bench.measure.threads import set_threads
    from optim import Variant, build
    from optim.artifact import BUILD_SPEED_CHECK
    from optim.context import build_context
    from optim.variant import standalone_source

    set_threads(job.threads)
    torch.manual_seed(job.seed)
    # A process that only loads a saved ONNX/OpenVINO/program file reads what it needs from the manifest.
    loaded = (load_dir is not None and standalone_source(load_dir)) or models.load(job.config.load)
    workdir = variant_dir(job)
    ctx = build_context(job.config.build_settings(), loaded, workdir, options={BUILD_SPEED_CHECK: False})
    if job.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if load_dir is not None:
        variant = Variant.load(load_dir, job.device, base=job.config.load)
    else:
        variant = build(job.recipe, loaded, ctx)

    # First call apart from steady state: lazy compilation and autotuning land here, not in the percentiles.
    c, h, w = loaded.info.input_size
    first_input = torch.randn(1, c, h, w)
    sync = cuda_synchronize if job.device == "cuda" else None
    first_ms = WallTimer(sync).time(lambda: variant.predict(variant.prepare_input(first_input))) * 1e3
    if load_dir is not None:
        return Prepared(job, variant, loaded.info, ctx, Path(load_dir), first_ms, saved=True)
    return Prepared(job, variant, loaded.info, ctx, workdir, first_ms)


def save_variant(prep: Prepared) -> str | None:
    """Save the variant to its directory once; returns why it could not be saved, or None.

    Saving is a convenience (re-benchmarking, replicas): a variant that cannot be saved is still measured.
    """
    if prep.saved:
        return prep.variant.manifest.get("save_error")
    try:
        prep.variant.save(prep.workdir)
    except Exception as exc:  # noqa: BLE001 - recorded in the row; the measurement stands without it
        prep.variant.manifest["save_error"] = f"{type(exc).__name__}: {exc}"
    prep.saved = True
    return prep.variant.manifest.get("save_error")


def measure_accuracy(prep: Prepared) -> dict[str, Any]:
    """Top-1/top-5 on val and agreement with the FP32 predictions (which the fp32 job itself writes)."""
    import numpy as np

    from optim.evaluate import evaluate_variant

    if prep.accuracy is not None:
        return prep.accuracy
    job, info = prep.job, prep.info
    acc: dict[str, Any] = {}
    if job.accuracy and info.has_weights and prep.spec:
        ref_file = reference_path(job, info)
        reference = np.load(ref_file) if ref_file.is_file() else None
        val = prep.ctx.data.val
        acc, preds = evaluate_variant(prep.variant, val, reference, prep.eval_batch)
        acc["accuracy_batch"] = prep.eval_batch or val.batch_size
        _save_array(predictions_path(job.run_dir, job.recipe, job.device), np.asarray(preds, dtype=np.int64))
        if reference is None and job.recipe == REFERENCE:
            _save_array(ref_file, preds)
            acc["agreement"] = 100.0
        skipped = prep.ctx.data.skipped_images
        if skipped:
            acc["skipped_images"] = skipped
    elif not info.has_weights:
        acc = {"accuracy_note": "random init: speed only, accuracy not measured"}
    prep.accuracy = acc
    return acc


def common_fields(prep: Prepared) -> dict[str, Any]:
    """Accuracy, save the variant, and every field of a result row that does not depend on the scenario."""
    import torch

    from models.machine import fingerprint

    job, info, variant = prep.job, prep.info, prep.variant
    acc = measure_accuracy(prep)
    save_variant(prep)
    peak = {"peak_rss_mb": round(_peak_rss_mb(), 1)}
    if job.device == "cuda":
        peak["max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    manifest = variant.manifest
    return {
        "schema": SCHEMA_VERSION,
        "run_id": job.run_id,
        "variant": variant.name,
        "recipe": job.recipe,
        "device": job.device,
        "status": "ok",
        "model": info.arch,
        "img_size": info.input_size[1],
        "num_classes": info.num_classes,
        "checkpoint": info.source,
        "checkpoint_sha256": info.sha256,
        "data_spec": prep.spec,
        "build_s": manifest.get("build_s"),
        "first_call_ms": round(prep.first_ms, 3),
        "size_mb": manifest.get("size_mb"),
        "variant_dir": str(prep.workdir),
        **acc,
        **peak,
        "threads": job.threads,
        "thread_pinning": prep.pinning,
        "quick": job.quick,
        "manifest": {k: manifest.get(k) for k in ("steps", "artifact_kind", "versions", "notes") if k in manifest},
        "fingerprint": fingerprint(job.device, job.threads),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def finish(prep: Prepared, scenario_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One full result row per measured scenario."""
    common = common_fields(prep)
    return [{**common, **row} for row in scenario_rows]


def status_row(job: Job, status: str, reason: str, code: str | None = None) -> dict[str, Any]:
    """A row for a job that produced no measurement: ``failed`` (it broke; ``code`` says why, see
    :mod:`bench.run.failures`) or ``skipped`` (cannot run here)."""
    row = {
        "schema": SCHEMA_VERSION,
        "run_id": job.run_id,
        "variant": job.recipe,
        "recipe": job.recipe,
        "device": job.device,
        "scenario": "*",
        "status": status,
        "error" if status == "failed" else "reason": reason,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if status == "failed":
        row["reason_code"] = code or "error"
    return row
