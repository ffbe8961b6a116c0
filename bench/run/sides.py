"""A side: one variant measured in one or several processes. Starting them, and one row per scenario from all.

A process is one draw: the same model runs a few percent faster or slower in one process than in the next,
for the process's whole life, and that offset is much of what moves a variant's paired speedup from one sweep
to the next (docs/measurement.md). So a side may be measured by several processes, over which
:func:`bench.run.schedule.interleave` spreads the rounds.

Those processes all load the variant from the directory a separate builder process saved it to, as a
deployment loads its artifact; the builder measures accuracy while they load, then exits untimed. Why not
let the builder time too: a process that built the variant (or ran its accuracy pass) runs slower than
processes that only loaded it, so a builder among the timed processes would bias the side
(docs/measurement.md).

By default a CPU sweep times two loaded processes for every variant whose saved form loads without
compiling again. A variant whose loading compiles again (a second compile would cost the build time
again), CUDA sweeps (every process holds its own CUDA context and activations on cards as small as a T4's
16 GB) and ``--quick`` smoke runs, which are not for decisions, are timed in the process that built them.

The rows: the builder's build time, first call, accuracy and (on CUDA) device-only figures stand for the
variant; the end-to-end samples of all timed processes are pooled, because together they are what the
rounds measured, and the percentiles are taken again over the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.config import CPU_REPLICAS, Job
from bench.run.client import MeasurementServer, ServerError
from bench.run.process import safe_name
from bench.run.schedule import Side
from models.timers import summarize


def default_processes(device: str, quick: bool, cpu_default: int = CPU_REPLICAS) -> int:
    """Timed processes a side gets by default: ``cpu_default`` on CPU (two; four with ``--precise``); one on
    CUDA, and in ``--quick`` smoke runs."""
    return 1 if device == "cuda" or quick else cpu_default


def replica_count(
    device: str, load_compiles: bool, requested: int | None, quick: bool = False, cpu_default: int = CPU_REPLICAS
) -> int:
    """How many processes time one side: ``requested`` if given, else the default described above."""
    if requested is not None:
        return max(1, int(requested))
    return 1 if load_compiles else default_processes(device, quick, cpu_default)


def planned_processes(job: Job, requested: int | None, cpu_default: int = CPU_REPLICAS) -> int:
    """Timed processes a job will get, from its recipe before it is built (compiling loaders get one)."""
    from optim.recipe import parse

    return replica_count(job.device, parse(job.recipe).reload_compiles(job.device), requested, job.quick, cpu_default)


def spawn_side(
    job: Job, requested: int | None, timeout_s: float, cpu_default: int = CPU_REPLICAS
) -> list[MeasurementServer]:
    """Spawn (without starting) a side's processes, the builder first, and wait until all have imported torch.

    With one timed process the builder is all; with K > 1, K more processes will load what it saves. The
    imports (most of a process's start-up) run side by side, before the builder builds, so the loaded
    processes cost little more than loading the variant and warming it up.
    """
    replica_job = job.replace(accuracy=False)
    servers = [MeasurementServer(job.recipe, job, _log(job, 1), timeout_s=timeout_s)]
    try:
        timed = planned_processes(job, requested, cpu_default)
        for i in range(2, timed + 2 if timed > 1 else 2):
            servers.append(MeasurementServer(f"{job.recipe}#{i}", replica_job, _log(job, i), timeout_s=timeout_s))
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


def _log(job: Job, index: int) -> Path:
    suffix = "" if index == 1 else f"-{index}"
    return Path(job.run_dir) / "logs" / f"{safe_name(job.recipe)}{suffix}.log"


# Per-process fields that are not about the samples: the peak is the largest any process reached.
_PEAKS = ("peak_rss_mb", "max_memory_allocated_mb")


def start_side(
    servers: list[MeasurementServer],
    job: Job,
    requested: int | None,
    reference: bool = False,
    cpu_default: int = CPU_REPLICAS,
) -> tuple[Side, str | None]:
    """Build the variant in the first process and, if others were spawned, have them load what it saved.

    The loaded processes start side by side while the builder measures accuracy; then the builder exits
    and they alone are timed. Where none can be used (the variant could not be saved, loading it compiles
    again, or every copy failed to load) the builder is timed instead: a loaded copy is a refinement, not a
    reason to fail a variant. Returns the side and, when it is timed differently from what was planned, a
    note saying why. ``reference``: the builder writes the fp32 predictions every variant's agreement is
    measured against before anything else happens.
    """
    builder, spares = servers[0], servers[1:]
    started: list[MeasurementServer] = []
    notes: list[str] = []
    report, top1 = None, None
    try:
        builder.start(warm=not spares)  # with copies to time it, the builder's warm-up would be wasted
        if reference:
            top1 = builder.accuracy().get("top1")
        if spares:
            saved = builder.request({"cmd": "save"})
            count = replica_count(job.device, bool(saved.get("load_compiles")), requested, job.quick, cpu_default)
            if count > 1 and not saved.get("dir"):
                notes.append(f"the variant could not be saved ({saved.get('save_problem')})")
            elif count > 1:
                for server in spares[:count]:
                    server.post_start(saved["dir"])
                report = builder.request({"cmd": "report"})["fields"]  # accuracy runs while the copies load
                started = _loaded_copies(builder, spares[:count], notes)
            if notes:
                where = f"{len(started)} loaded process(es)" if started else "the process that built it"
                notes.append(f"measured in {where}")
    except BaseException:
        for server in servers:
            server.close()
        raise
    timed = started or [builder]
    for server in servers:
        if server not in timed:
            server.close()
    if not started and top1 is None and job.accuracy:
        # Timed where it was built: its accuracy pass (made for the row in any case) runs before the rounds, so
        # that its top-1 is known while they run and a variant plainly behind another can stop early.
        top1 = _accuracy_or_close(builder)
    side = Side(builder.name, timed, report if started else None)
    side.top1 = top1 if top1 is not None else (report or {}).get("top1") if started else None
    return side, "; ".join(notes) or None


def _loaded_copies(
    builder: MeasurementServer, copies: Sequence[MeasurementServer], notes: list[str]
) -> list[MeasurementServer]:
    """The copies that loaded the saved variant at the builder's batch sizes; a note for each that did not."""
    loaded = []
    for server in copies:
        try:
            server.started()
        except ServerError as exc:
            notes.append(f"{server.name} could not load the saved variant ({exc})")
            continue
        if server.info.get("batches") != builder.info.get("batches"):
            notes.append(f"{server.name} ran at batch sizes {server.info.get('batches')}")
            continue
        loaded.append(server)
    return loaded


def _accuracy_or_close(server: MeasurementServer) -> float | None:
    try:
        return server.accuracy().get("top1")
    except BaseException:
        server.close()
        raise


def finish_side(side: Side) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the side (see :func:`merge_replica_rows`) and notes on processes dropped on the way.

    The first timed process must finish; another that fails to is dropped, and the slices it took are still
    pooled. Where loaded processes did the timing, the builder's report supplies what no timing gives.
    """
    per_process = [side.first.finish()]
    for index, server in enumerate(side.servers[1:], start=1):
        if index in side.dropped:
            continue
        try:
            per_process.append(server.finish())
        except ServerError as exc:
            side.drop(index, str(exc))
    rows = merge_replica_rows(per_process, side.history)
    if side.report:
        rows = [with_builder_fields(row, side.report) for row in rows]
    return rows, side.notes()


def with_builder_fields(row: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """A loaded process's row with the builder's fields (build time, first call, accuracy, manifest, ...).

    How the threads were pinned stays the timed process's own."""
    out = {**row, **{k: v for k, v in report.items() if k != "thread_pinning"}}
    for key in _PEAKS:
        values = [v for v in (row.get(key), report.get(key)) if v is not None]
        if values:
            out[key] = max(values)
    return out


def merge_replica_rows(
    per_process: Sequence[list[dict[str, Any]]], history: dict[str, list[tuple[int, list[float]]]]
) -> list[dict[str, Any]]:
    """The first process's rows, with the samples of every process pooled in the order they were taken.

    ``history``: per scenario, every (process index, slice in seconds) in order (:attr:`Side.history`).
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


def measure_processes(
    named: Sequence[tuple[str, Job, Path | None]], plan: Any, log_dir: Path, timeout_s: float
) -> dict[str, list[dict[str, Any]]]:
    """One process per (name, job, code root), every one its own side, interleaved; the rows of each by name.

    The gate's A/B mode (base and head checkouts) and its simulator (copies of one variant) measure this way,
    each process a fresh interpreter: the A/B mode must run each checkout's own code, and the simulator's false-alarm
    figures stand for the A/B mode only if its processes start the same way. Every process is closed whatever happens.
    """
    from bench.run.schedule import interleave

    servers: list[MeasurementServer] = []
    try:
        for name, job, root in named:
            log = log_dir / f"{safe_name(job.recipe)}-{name}.log"
            servers.append(MeasurementServer(name, job, log, root, timeout_s, fresh_interpreter=True))
        for server in servers:
            server.wait_ready()
        for server in servers:
            server.start()
        interleave(servers, servers[0].job.scenarios, plan)
        return {server.name: server.finish() for server in servers}
    finally:
        for server in servers:
            server.close()
