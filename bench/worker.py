"""What runs inside the fresh process of one job: build a variant, time it, measure its accuracy.

A :class:`Job` is plain and picklable so any executor (local processes today, a Ray cluster later) can
ship it. ``run_job`` returns one result row per scenario; the executor turns crashes into ``failed`` rows.
"""

from __future__ import annotations

import json
import os
import resource
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.timing import CudaEventTimer, ScenarioConfig, WallTimer, cuda_synchronize, run_timed, summarize

SCHEMA_VERSION = 1
T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    """One variant on one device, measured in every scenario. Plain values only."""

    recipe: str
    device: str
    scenarios: tuple[ScenarioConfig, ...]
    run_dir: str
    run_id: str
    ckpt: str | None = None
    arch: str | None = None
    num_classes: int | None = None
    img_size: int | None = None
    data_spec: str | None = "digits"
    data_dir: str | None = None
    threads: int = 1
    seed: int = 0
    calib_size: int = 512
    quick: bool = False
    accuracy: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scenarios"] = [s.to_dict() for s in self.scenarios]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Job:
        d = dict(d)
        d["scenarios"] = tuple(ScenarioConfig(**s) for s in d["scenarios"])
        return Job(**d)


def set_threads(threads: int) -> None:
    """Same count for every intra-op pool (torch, OpenMP, MKL, ORT reads ``OPTBENCH_THREADS``)."""
    import torch

    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    # Pin the process to as many CPUs as it has threads: the scheduler then cannot move the measurement
    # around (one source of process-to-process spread); with threads == all CPUs this changes nothing.
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if threads < len(cpus):
            os.sched_setaffinity(0, cpus[:threads])
    except (AttributeError, OSError):
        pass


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPTBENCH_THREADS")


@contextmanager
def threads_restored() -> Iterator[None]:
    """Undo :func:`set_threads` on exit: for a process that measures in-process and then goes on (pytest).

    set_threads confines the calling thread to as many CPUs as threads, and everything started later inherits
    that, so without this one in-process job leaves the rest of a test session on one CPU.
    """
    import torch

    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    threads = torch.get_num_threads()
    saved = {var: os.environ.get(var) for var in THREAD_VARS}
    try:
        yield
    finally:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        torch.set_num_threads(threads)
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def reference_path(job: Job, info) -> Path:
    """Where the FP32 predictions on val are cached for agreement (shared by every variant of a run)."""
    key = (info.sha256 or info.arch)[:16]
    size = info.input_size[1]
    spec = (job.data_spec or "none").replace("/", "_").replace(os.sep, "_")[-40:]
    return Path(job.run_dir) / "reference" / f"fp32-{key}-{spec}-{size}.npy"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _time_batch(variant, job: Job, scenario: ScenarioConfig, host) -> tuple[list[float], list[float] | None]:
    """End-to-end samples (host batch in) and, on CUDA, device-only samples (CUDA events, input already there)."""
    if job.device != "cuda":
        return run_timed(lambda: variant.predict(variant.prepare_input(host)), scenario, WallTimer()), None
    e2e = run_timed(lambda: variant.predict(variant.prepare_input(host)), scenario, WallTimer(cuda_synchronize))
    ready = variant.prepare_input(host)
    return e2e, run_timed(lambda: variant.predict(ready), scenario, CudaEventTimer())


def host_batch(input_size, batch: int, seed: int, device: str):
    """The host batch timed calls copy in: fixed by the seed, so every process of a run feeds the same data.

    On CUDA it is pinned, as ``DataLoader(pin_memory=True)`` hands batches to a serving loop: a pageable batch
    is staged through a bounce buffer, and at batch 128 that copy alone (~8 ms for 77 MB) would cap every
    variant's end-to-end throughput near 4,000 img/s whatever the model does.
    """
    import torch

    c, h, w = input_size
    x = torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(seed))
    return x.pin_memory() if device == "cuda" else x


def scenario_input(job: Job, scenario: ScenarioConfig, input_size, batch: int | None = None):
    """The host batch a scenario of this job times (see :func:`host_batch`)."""
    return host_batch(input_size, batch or scenario.batch_size, job.seed, job.device)


def scenario_row(
    job: Job, scenario: ScenarioConfig, batch: int, e2e: list[float], device_only: list[float] | None, note: str | None
) -> dict[str, Any]:
    """Percentiles, every sample, and which timer took them: one scenario's part of a result row."""
    row: dict[str, Any] = {"scenario": scenario.name, "batch_size": batch, **summarize(e2e, batch)}
    row["samples_ms"] = [round(s * 1e3, 6) for s in e2e]
    cuda_timer = "perf_counter+cuda_synchronize (end-to-end, pinned host batch copied in)"
    row["timer"] = cuda_timer if job.device == "cuda" else "perf_counter"
    if device_only is not None:
        stats = summarize(device_only, batch)
        row.update({f"device_{k}": v for k, v in stats.items() if k != "n"})
        row["device_timer"] = "cuda_events (device-only, input already on the GPU)"
    if note:
        row["note"] = note
    return row


def halve_on_oom(batch: int, attempt: Callable[[int], T]) -> tuple[T, int, str | None]:
    """``attempt(batch)``; when the GPU runs out of memory, halve the batch and try again (down to 1).

    Returns (result, the batch that worked, a note for the row when it is not the one asked for)."""
    import torch

    note = None
    while True:
        try:
            return attempt(batch), batch, note
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            torch.cuda.empty_cache()
            note = f"batch {batch} ran out of GPU memory; measured at batch {batch // 2}"
            batch //= 2


def _measure_scenario(variant, job: Job, scenario: ScenarioConfig, input_size) -> dict[str, Any]:
    def attempt(batch: int):
        return _time_batch(variant, job, scenario, scenario_input(job, scenario, input_size, batch))

    (e2e, device_only), batch, note = halve_on_oom(scenario.batch_size, attempt)
    return scenario_row(job, scenario, batch, e2e, device_only, note)


@dataclass
class Prepared:
    """A built variant in this process, ready to be timed: what measuring and finishing need."""

    job: Job
    variant: Any
    info: Any
    ctx: Any
    workdir: Path
    spec: str | None
    first_ms: float
    accuracy: dict[str, Any] | None = None
    saved: bool = False  # the variant directory holds this variant (saved here, or loaded from it)
    eval_batch: int | None = None  # accuracy runs at this batch: the largest one timed, so nothing compiles again
    pinning: str | None = None  # how the threads were pinned for timing (bench.affinity), None if they were not


def prepare(job: Job, load_dir: str | Path | None = None) -> Prepared:
    """Load the checkpoint, build the job's variant and make its first call (timed apart from steady state).

    With ``load_dir`` the variant is not built but loaded from a directory another process saved it to
    (``Variant.load``), as a deployment loads its artifact: that is how a sweep starts a second measurement
    process of the same variant without paying for the build again.
    """
    import torch

    import data
    import models
    from optim import BuildContext, build

    set_threads(job.threads)
    torch.manual_seed(job.seed)
    if job.ckpt is None and not job.arch:
        raise models.InputError("job has neither a checkpoint nor an architecture")
    loaded = models.load(job.ckpt, arch=job.arch, num_classes=job.num_classes, img_size=job.img_size)
    info = loaded.info
    loader_cfg = data.LoaderConfig(batch_size=32, calib_size=job.calib_size, seed=job.seed)
    spec = job.data_spec or info.data_spec

    def data_factory():
        if not spec:
            raise models.InputError("this recipe needs data; pass --data")
        return data.build(spec, info.data_config, loader_cfg, job.data_dir)

    workdir = Path(job.run_dir) / "variants" / safe_name(job.recipe) / job.device
    ctx = BuildContext(
        loaded=loaded,
        device=job.device,
        workdir=workdir,
        threads=job.threads,
        seed=job.seed,
        quick=job.quick,
        calib_size=job.calib_size,
        data_factory=data_factory,
        options=dict(job.options),
    )
    if job.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if load_dir is not None:
        from optim import Variant

        variant = Variant.load(load_dir, job.device)
    else:
        variant = build(job.recipe, loaded, ctx)

    # First call apart from steady state: lazy compilation and autotuning land here, not in the percentiles.
    c, h, w = info.input_size
    first_input = torch.randn(1, c, h, w)
    sync = cuda_synchronize if job.device == "cuda" else None
    first_ms = WallTimer(sync).time(lambda: variant.predict(variant.prepare_input(first_input))) * 1e3
    if load_dir is not None:
        return Prepared(job, variant, info, ctx, Path(load_dir), spec, first_ms, saved=True)
    return Prepared(job, variant, info, ctx, workdir, spec, first_ms)


def save_variant(prep: Prepared) -> str | None:
    """Save the variant to its directory once; returns why it could not be saved, or None.

    Saving is a convenience (re-benchmarking, replicas): a variant that cannot be saved is still measured.
    """
    if prep.saved:
        return prep.variant.manifest.get("save_error")
    try:
        prep.variant.save(prep.workdir)
    except Exception as exc:
        prep.variant.manifest["save_error"] = f"{type(exc).__name__}: {exc}"
    prep.saved = True
    return prep.variant.manifest.get("save_error")


def measure_accuracy(prep: Prepared) -> dict[str, Any]:
    """Top-1/top-5 on val and agreement with the FP32 predictions (which the fp32 job itself writes)."""
    import numpy as np

    from bench.accuracy import evaluate_variant

    if prep.accuracy is not None:
        return prep.accuracy
    job, info = prep.job, prep.info
    acc: dict[str, Any] = {}
    if job.accuracy and info.has_weights and prep.spec:
        ref_file = reference_path(job, info)
        reference = np.load(ref_file) if ref_file.is_file() else None
        acc, preds = evaluate_variant(prep.variant, prep.ctx.data.val, reference, prep.eval_batch)
        if reference is None and job.recipe == "fp32":
            ref_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref_file.with_name(ref_file.name + ".tmp.npy")
            np.save(tmp, preds)
            tmp.replace(ref_file)
            acc["agreement"] = 100.0
    elif not info.has_weights:
        acc = {"accuracy_note": "random init: speed only, accuracy not measured"}
    prep.accuracy = acc
    return acc


def finish(prep: Prepared, scenario_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy, save the variant, and one full result row per measured scenario."""
    common = common_fields(prep)
    return [{**common, **row} for row in scenario_rows]


def common_fields(prep: Prepared) -> dict[str, Any]:
    """Accuracy, save the variant, and every field of a result row that does not depend on the scenario."""
    import torch

    from bench.fingerprint import fingerprint

    job, info, variant = prep.job, prep.info, prep.variant
    acc = measure_accuracy(prep)
    save_variant(prep)
    peak = {"peak_rss_mb": round(_peak_rss_mb(), 1)}
    if job.device == "cuda":
        peak["max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)

    manifest = variant.manifest
    common = {
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
    return common


def run_job(job: Job) -> list[dict[str, Any]]:
    """Build the job's variant in this process and measure it; raises on failure (the executor records it)."""
    from bench.affinity import pin_threads

    prep = prepare(job)
    prep.pinning = pin_threads(job.threads)
    rows = [_measure_scenario(prep.variant, job, s, prep.info.input_size) for s in job.scenarios]
    prep.eval_batch = max((int(row["batch_size"]) for row in rows), default=None)
    return finish(prep, rows)


def safe_name(text: str, limit: int = 80) -> str:
    """A recipe (``prune(0.5)+ort-int8``) as a file or folder name: every path needs the same spelling."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:limit]


def child_main(job_dict: dict[str, Any], result_path: str, log_path: str) -> None:
    """Entry point of the spawned process: output goes to a log file, the rows (or the error) to JSON."""
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        rows = run_job(Job.from_dict(job_dict))
        payload: dict[str, Any] = {"rows": rows}
        code = 0
    except BaseException as exc:  # the parent records any failure as a row; nothing may escape silently
        traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        payload = {"error": f"{type(exc).__name__}: {message}"[:500]}
        code = 1
    tmp = result_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, default=str)
    os.replace(tmp, result_path)
    os._exit(code)
