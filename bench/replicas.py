"""A side measured in several processes: starting them, and one result row per scenario from all of them.

A process is one draw: on the 2-vCPU VM the same model ran a few percent faster or slower in one process
than in the next, for the process's whole life, and that offset was most of what still moved a variant's
paired speedup from one sweep to the next. So a side may be measured by several processes: the first
builds the variant and saves it, the others load what it saved (as a deployment loads its artifact), and
:func:`bench.interleave.interleave` spreads the rounds over them.

By default a CPU sweep uses two processes for every variant whose saved form loads without compiling
again, and one otherwise (a compiled variant's second process would cost its compile time again); CUDA
sweeps use one, because every process holds its own CUDA context and activations on cards as small as a
T4's 16 GB, and so do ``--quick`` smoke runs, which are not for decisions.

The rows: the first process built the variant, so its build time, first call, accuracy and (on CUDA)
device-only figures stand for the variant; the end-to-end samples of all processes are pooled, because
together they are what the rounds measured, and the percentiles are taken again over the pool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.interleave import MeasurementServer, Replicas, ServerError
from bench.sweep import SweepConfig
from bench.timing import summarize
from bench.worker import Job, safe_name

CPU_REPLICAS = 2  # processes per side on CPU when loading the saved variant does not compile again


def default_processes(device: str, quick: bool) -> int:
    """Processes a side gets by default: two on CPU; one on CUDA, and in ``--quick`` smoke runs."""
    return 1 if device == "cuda" or quick else CPU_REPLICAS


def replica_count(device: str, load_compiles: bool, requested: int | None, quick: bool = False) -> int:
    """How many processes measure one side: ``requested`` if given, else the default described above."""
    if requested is not None:
        return max(1, int(requested))
    return 1 if load_compiles else default_processes(device, quick)


def planned_processes(job: Job, requested: int | None) -> int:
    """Processes to spawn for a job before it is built, from its recipe (compiling loaders get one)."""
    from optim.recipe import parse

    return replica_count(job.device, parse(job.recipe).reload_compiles(job.device), requested, job.quick)


def spawn_side(cfg: SweepConfig, job: Job, requested: int | None, timeout_s: float) -> list[MeasurementServer]:
    """Spawn (without starting) the processes a side will use, and wait until all have imported torch and timm.

    The imports (most of a process's start-up) then run side by side, before the first process builds, so a
    second process costs little more than loading the variant and warming it up.
    """
    replica_job = dataclasses.replace(job, accuracy=False)
    servers = [MeasurementServer(job.recipe, job, _log(cfg, job.recipe, 1), timeout_s=timeout_s, start=False)]
    try:
        for i in range(2, planned_processes(job, requested) + 1):
            log = _log(cfg, job.recipe, i)
            servers.append(MeasurementServer(f"{job.recipe}#{i}", replica_job, log, timeout_s=timeout_s, start=False))
        servers[0].wait_ready()
        ready = [servers[0]]
        for server in servers[1:]:
            try:
                server.wait_ready()
                ready.append(server)
            except ServerError:  # a spare that died is a refinement lost; start_side measures with fewer
                server.close()
        return ready
    except BaseException:
        for server in servers:
            server.close()
        raise


def _log(cfg: SweepConfig, recipe: str, index: int) -> Path:
    suffix = "" if index == 1 else f"-{index}"
    return cfg.run_dir / "logs" / f"{safe_name(recipe)}{suffix}.log"


def start_side(
    servers: list[MeasurementServer], job: Job, requested: int | None, reference: bool = False
) -> tuple[Replicas, str | None]:
    """Build the variant in the first process, save it, and start the others, which load what it saved.

    Saving happens before timing only when there are other processes to load it. Returns the side and,
    when it has fewer processes than intended, a note saying why: the measurement goes on with the
    processes it has, since a second process is a refinement, not a reason to fail a variant.
    ``reference``: measure the first one's accuracy before the others start (the fp32 predictions every
    variant's agreement is measured against).
    """
    first, spares = servers[0], servers[1:]
    started, note = [first], None
    try:
        first.start()
        if reference:
            first.accuracy()
        saved = first.request({"cmd": "save"}) if spares else {}
        count = replica_count(job.device, bool(saved.get("load_compiles")), requested, job.quick) if spares else 1
        if count > 1 and not saved.get("dir"):
            note = f"measured in one process: the variant could not be saved for a second ({saved.get('save_problem')})"
            count = 1
        for server in spares[: count - 1]:
            try:
                server.start(saved["dir"])
            except ServerError as exc:
                note = f"{server.name} could not load the saved variant ({exc}); measured in {len(started)}"
                break
            if server.info.get("batches") != first.info.get("batches"):
                note = f"{server.name} ran at batch sizes {server.info.get('batches')}; measured in {len(started)}"
                break
            started.append(server)
    except BaseException:
        for server in servers:
            server.close()
        raise
    for server in servers:
        if server not in started:
            server.close()
    return Replicas(first.name, started), note


def finish_side(side: Replicas) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the side (see :func:`merge_replica_rows`) and notes on processes dropped on the way.

    The first process must finish (its rows are the variant's); another that fails to is dropped, and the
    slices it took are still pooled.
    """
    per_process = [side.first.finish()]
    for index, server in enumerate(side.servers[1:], start=1):
        if index in side.dropped:
            continue
        try:
            per_process.append(server.finish())
        except ServerError as exc:
            side.drop(index, str(exc))
    return merge_replica_rows(per_process, side.history), side.notes()


# Per-process fields that are not about the samples: the peak is the largest any process reached.
_PEAKS = ("peak_rss_mb", "max_memory_allocated_mb")


def merge_replica_rows(
    per_process: Sequence[list[dict[str, Any]]], history: dict[str, list[tuple[int, list[float]]]]
) -> list[dict[str, Any]]:
    """The first process's rows, with the samples of every process pooled in the order they were taken.

    ``history``: per scenario, every (process index, slice in seconds) in order (:attr:`Replicas.history`).
    Where more than one process took slices, ``samples_ms``, ``slice_lengths`` and the percentiles come from
    all of them, and ``slice_process`` / ``process_samples`` say which process took what.
    """
    if not per_process:
        return []
    merged = []
    for row in per_process[0]:
        taken = history.get(str(row.get("scenario")), [])
        if len({index for index, _ in taken}) < 2:  # one process took every slice: its own row is the pool
            merged.append(dict(row))
            continue
        seconds = [x for _, chunk in taken for x in chunk]
        out = {**row, **summarize(seconds, int(row["batch_size"]))}
        out["samples_ms"] = [round(x * 1e3, 6) for x in seconds]
        out["slice_lengths"] = [len(chunk) for _, chunk in taken]
        out["slice_process"] = [index for index, _ in taken]
        count = max(index for index, _ in taken) + 1
        out["process_samples"] = [sum(len(c) for i, c in taken if i == k) for k in range(count)]
        same = [r for rows in per_process for r in rows if r.get("scenario") == row.get("scenario")]
        for key in _PEAKS:
            values = [r[key] for r in same if r.get(key) is not None]
            if values:
                out[key] = max(values)
        merged.append(out)
    return merged
