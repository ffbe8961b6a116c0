"""Executors run jobs and hand back result rows. The default runs each job in its own spawned process,
one at a time so measurements never share the CPU; a cluster executor (Ray: one job per node, GPU
resources) only has to implement the same ``run(job) -> rows`` and ``failed_row``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from bench.worker import SCHEMA_VERSION, Job, child_main, safe_name


class Executor(Protocol):
    def run(self, job: Job) -> list[dict[str, Any]]: ...


def status_row(job: Job, status: str, reason: str) -> dict[str, Any]:
    """A row for a job that produced no measurement: ``failed`` (it broke) or ``skipped`` (cannot run here)."""
    return {
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


def _last_log_line(log_path: Path) -> str:
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


class LocalProcessExecutor:
    """Spawn a fresh interpreter per job (no inherited CUDA context, no shared Inductor/dynamo caches)."""

    def __init__(self, timeout_s: float = 1800.0, log_dir: str | Path | None = None) -> None:
        self.timeout_s = timeout_s
        self.log_dir = Path(log_dir) if log_dir else None
        self._ctx = mp.get_context("spawn")

    def run(self, job: Job) -> list[dict[str, Any]]:
        log_dir = self.log_dir or Path(job.run_dir) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        safe = safe_name(f"{job.recipe}-{job.device}", 100)
        log_path = log_dir / f"{safe}.log"
        fd, result_path = tempfile.mkstemp(prefix="optbench-", suffix=".json")
        os.close(fd)
        os.unlink(result_path)
        # Thread pools are sized from the environment when the child imports torch/ORT: set it before spawning.
        saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPTBENCH_THREADS")}
        for key in saved:
            os.environ[key] = str(job.threads)
        try:
            proc = self._ctx.Process(target=child_main, args=(job.to_dict(), result_path, str(log_path)), daemon=False)
            proc.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        proc.join(self.timeout_s)
        if proc.is_alive():
            proc.kill()
            proc.join(10)
            return [status_row(job, "failed", f"timed out after {self.timeout_s:.0f}s (see {log_path})")]
        try:
            payload = json.loads(Path(result_path).read_text()) if Path(result_path).exists() else None
        except json.JSONDecodeError:
            payload = None
        finally:
            Path(result_path).unlink(missing_ok=True)
        if payload and "rows" in payload and proc.exitcode == 0:
            return payload["rows"]
        if payload and "error" in payload:
            return [status_row(job, "failed", payload["error"])]
        code = proc.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            reason = f"process killed by {name}{hint}"
        else:
            reason = f"process exited with code {code} without a result: {_last_log_line(log_path)}"
        return [status_row(job, "failed", f"{reason} (see {log_path})")]
