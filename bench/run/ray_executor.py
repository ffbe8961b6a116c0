"""``--executor ray``: the same sweep on a Ray cluster, one measurement per node at a time.

Each job is one Ray task that claims the node's single ``optbench_slot`` resource, so nothing else is measured on
that node while it runs. The task runs the whole paired measurement there: it starts its own fp32 reference
processes, builds and loads the variant, interleaves the two and finishes both (:mod:`bench.run.pairing`), so every
speedup is a ratio taken on one machine, and every node that measures variants measures fp32 too. Rows carry the
node (id, address, host name) and when the measurement ran; the report groups them by kind of hardware.

``--ray-target LABEL[,LABEL]`` sends every job to nodes that declare that custom resource (start a T4 node with
``--resources='{"optbench_slot": 1, "t4": 1}'``), once per label: a sweep per kind of machine. A node that dies
under a task has the task measured again once on another node, and its rows say so; a second failure becomes a
``failed`` row. The checkpoint reaches the nodes by its path (a shared file system) or, when a node cannot see the
path and the file is under :data:`SHIP_LIMIT`, through Ray's object store; data folders must be on a shared path.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.config import Job, RunConfig
from bench.run import failures
from bench.run.executors import ExecutorSpec, register
from bench.run.failures import failure_text
from data.errors import InputError, MissingDependencyError

SLOT = "optbench_slot"
SHIP_LIMIT = 512 * 2**20  # checkpoints up to this size travel through the object store when a node lacks the path
INSTALL_HINT = "pip install '.[cluster]' (or pip install ray)"
# Ray retries an address it cannot reach for as long as it is left to (every 30 s, without end): past this many
# seconds the command gives up with one line. OPTBENCH_RAY_CONNECT_TIMEOUT_S changes it.
CONNECT_TIMEOUT_S = 60.0


def _require_ray():
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(f"--executor ray needs Ray: {INSTALL_HINT}") from None
    return ray


def _localize(job_dict: dict[str, Any], shipped: Any) -> dict[str, Any]:
    """The job with a node-local copy of the checkpoint when this node cannot see the shared path."""
    import ray

    path = job_dict["config"]["load"].get("path")
    if not path or Path(path).exists() or shipped is None:
        return job_dict
    data: bytes = ray.get(shipped)
    local = Path(tempfile.gettempdir()) / "optbench-shipped" / hashlib.sha256(data).hexdigest()[:16] / Path(path).name
    if not local.is_file():
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
    job_dict = {
        **job_dict,
        "config": {**job_dict["config"], "load": {**job_dict["config"]["load"], "path": str(local)}},
    }
    return job_dict


def measure_on_node(job_dict: dict[str, Any], reference_dict: dict[str, Any] | None, shipped: Any = None):
    """One job on the node Ray placed this task on: (the variant's rows, the reference's rows)."""
    import ray

    from bench.run.client import ServerError
    from bench.run.pairing import finish_reference, measure_against, measure_alone, start_reference
    from bench.run.process import status_row

    # A Ray worker outlives its tasks and is not ours to fork from: fresh interpreters, as everywhere before.
    os.environ["OPTBENCH_SPAWN"] = "subprocess"
    job = Job.from_dict(_localize(job_dict, shipped))
    node = {
        "id": ray.get_runtime_context().get_node_id(),
        "address": ray.util.get_node_ip_address(),
        "host": socket.gethostname(),
    }
    start = time.time()
    ref_rows: list[dict[str, Any]] = []
    try:
        if reference_dict is None:
            rows = measure_alone(job)
        else:
            ref_job = Job.from_dict(_localize(reference_dict, shipped))
            ref, note = start_reference(ref_job)
            try:
                rows = measure_against(ref, job)
            finally:
                ref_rows = finish_reference(ref, note) if ref.alive() else []
    except ServerError as exc:
        rows = [status_row(job, "failed", str(exc), exc.code)]
    end = time.time()
    for row in rows + ref_rows:
        row.update(node=node, measured_from=round(start, 3), measured_to=round(end, 3))
    return rows, ref_rows


class RayExecutor:
    """Jobs as Ray tasks, each holding a node's measurement slot for its whole paired measurement."""

    name = "ray"

    def __init__(self, cfg: RunConfig) -> None:
        self.ray = _require_ray()
        self.cfg = cfg
        self.address = cfg.executor_options.get("address")
        target = cfg.executor_options.get("target")
        self.targets: list[str | None] = [t.strip() for t in (target or "").split(",") if t.strip()] or [None]
        self._task = None
        self._shipped = None

    def check(self) -> None:
        """Connect now, before the command writes anything: a cluster that cannot be reached is bad input, and the
        run directory it would have left behind would block its --run-id. Ray's own connect never gives up on an
        address that does not answer, so a watchdog ends the process with one line (nothing is written yet)."""
        import threading

        limit = float(os.environ.get("OPTBENCH_RAY_CONNECT_TIMEOUT_S") or CONNECT_TIMEOUT_S)
        connected = threading.Event()

        def watchdog() -> None:
            if not connected.wait(limit):
                where = self.address or "auto"
                line = f"error: the Ray cluster at {where} did not answer within {limit:g} s; is the address reachable?"
                print(line, file=sys.stderr, flush=True)
                os._exit(2)

        threading.Thread(target=watchdog, name="ray-connect-watchdog", daemon=True).start()
        try:
            self._connect()
        finally:
            connected.set()

    def _connect(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            try:
                ray.init(address=self.address or "auto", log_to_driver=False, logging_level="ERROR")
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InputError(f"cannot reach a Ray cluster at {self.address or 'auto'} ({exc})") from None
        slots = {n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(SLOT)}
        if not slots:
            raise InputError(
                f"no node of the Ray cluster offers the {SLOT!r} resource; start nodes with "
                f"--resources='{{\"{SLOT}\": 1}}'"
            )
        for target in self.targets:
            if target and not any(n.get("Alive") and n.get("Resources", {}).get(target) for n in ray.nodes()):
                raise InputError(f"--ray-target {target}: no live node declares the resource {target!r}")
        self._task = ray.remote(max_retries=0)(measure_on_node)
        path = self.cfg.load.path
        if path and Path(path).is_file() and Path(path).stat().st_size <= SHIP_LIMIT:
            self._shipped = ray.put(Path(path).read_bytes())

    def _submit(self, job: Job, reference: Job | None, target: str | None):
        resources = {SLOT: 1, **({target: 0.001} if target else {})}
        task = self._task.options(num_cpus=0, resources=resources, name=f"optbench:{job.recipe}")
        return task.remote(job.to_dict(), reference.to_dict() if reference else None, self._shipped)

    def run(self, variants: Sequence[Job], reference: Job | None, record_reference: bool) -> Iterator[list[dict]]:
        from bench.run.process import status_row

        self._connect()
        ray = self.ray
        pending: dict[Any, tuple[Job, str | None, str | None]] = {}
        if not variants and record_reference and reference is not None:  # fp32 alone: one task per target
            variants, reference, record_reference = [reference], None, False
        for job in variants:
            for target in self.targets:
                pending[self._submit(job, reference, target)] = (job, target, None)
        references: dict[str, list[dict[str, Any]]] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.cfg.timeout_s)
            if not ready:
                for ref, (job, _, _) in list(pending.items()):
                    ray.cancel(ref, force=True)
                    why = f"no result within {self.cfg.timeout_s:.0f}s on the cluster"
                    yield [status_row(job, "failed", why, failures.TIMEOUT)]
                return
            ref = ready[0]
            job, target, retried = pending.pop(ref)
            try:
                rows, ref_rows = ray.get(ref)
            except ray.exceptions.RayError as exc:
                reason = failure_text(exc)[:250]
                if retried is None and _node_failure(ray, exc):
                    print(f"  {job.recipe}: {reason}; measuring it again on another node", file=sys.stderr)
                    pending[self._submit(job, reference, target)] = (job, target, reason)
                    continue
                rows, ref_rows = [status_row(job, "failed", reason)], []
            for row in rows:
                row["ray_target"] = target
                if retried:
                    row["note"] = "; ".join(
                        x for x in (row.get("note"), f"retried on another node after {retried}") if x
                    )
            if ref_rows:
                references.setdefault(str(ref_rows[0].get("node", {}).get("id")), ref_rows)
            yield rows
        if record_reference:
            yield from references.values()
        if record_reference and not references and reference is not None:
            yield [status_row(reference, "failed", "no node finished a paired measurement, so fp32 has no rows")]


def _node_failure(ray: Any, exc: Exception) -> bool:
    """Whether the task died with its node or worker (worth one more try elsewhere), not because of the job."""
    kinds = tuple(
        getattr(ray.exceptions, name)
        for name in ("NodeDiedError", "WorkerCrashedError", "TaskUnschedulableError", "ObjectLostError")
        if hasattr(ray.exceptions, name)
    )
    return isinstance(exc, kinds)


def _add_arguments(parser: Any) -> None:
    parser.add_argument("--ray-address", help="Ray cluster address (auto, ray://HOST:PORT; default: auto)")
    parser.add_argument("--ray-target", help="only nodes with this custom resource/label, comma-separated (e.g. t4)")


def _from_args(args: Any) -> dict[str, Any]:
    return {k: getattr(args, f"ray_{k}") for k in ("address", "target") if getattr(args, f"ray_{k}", None)}


register(
    ExecutorSpec(
        "ray",
        f"a Ray cluster, one measurement per node ({INSTALL_HINT})",
        RayExecutor,
        _add_arguments,
        _from_args,
        {"--ray-address": "address", "--ray-target": "target"},
        {"targets": "--ray-target"},
    )
)
