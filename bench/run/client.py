"""The coordinator's handle on one measurement process (:mod:`bench.run.server`): start it, send commands, read
replies, and turn a crash, a kill or a silence into one :class:`ServerError` line fit for a ``failed`` row.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.config import Job
from bench.measure.threads import THREAD_VARS
from bench.run import failures
from bench.run.zygote import spawn
from bench.scenarios import ScenarioConfig


class ServerError(RuntimeError):
    """A measurement process failed, died or went silent; the message is one line fit for a ``failed`` row and
    ``code`` says why (:mod:`bench.run.failures`)."""

    def __init__(self, message: str, code: str = failures.ERROR) -> None:
        super().__init__(message)
        self.code = code


def child_environment(threads: int, code_root: Path) -> dict[str, str]:
    """The environment of a measurement process: thread pools sized before torch/ORT are imported, our code
    first on the path, then the directory the user ran the command from (where their model factory lives)."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    paths = [str(code_root), os.getcwd(), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class MeasurementServer:
    """One measurement process for one job, optionally running another checkout's code (the gate's A/B)."""

    def __init__(
        self,
        name: str,
        job: Job,
        log_path: Path,
        code_root: Path | None = None,
        timeout_s: float = 1800.0,
        job_dict: dict[str, Any] | None = None,
        fresh_interpreter: bool = False,
    ) -> None:
        """Spawn the process (it imports torch and timm, then waits for commands).

        ``fresh_interpreter``: a new ``python`` rather than a fork of the warm forkserver; always so for another
        checkout's code (``code_root``).
        """
        self.name = name
        self.job = job
        self.job_dict = job_dict or job.to_dict()
        self.log_path = Path(log_path)
        self.timeout_s = timeout_s
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        root = Path(code_root) if code_root else Path(__file__).resolve().parents[2]
        env = child_environment(job.threads, root)
        # Every path in the job is absolute: the process runs in the user's folder (another checkout's code runs in
        # its own tree, so that tree's packages are the ones imported).
        cwd = str(root) if code_root else os.getcwd()
        self.proc = spawn(self.log_path, cwd, env, fresh_interpreter=fresh_interpreter or code_root is not None)
        self.info: dict[str, Any] = {}
        self.started_at = time.time()

    def start(self, load_dir: str | Path | None = None, warm: bool = True) -> dict[str, Any]:
        """Build the job's variant (or, as a replica, load what another server saved there) and warm it up.

        ``warm=False``: warm each scenario up at its first slice instead (a builder that may never be timed)."""
        self.post_start(load_dir, warm)
        return self.started()

    def post_start(self, load_dir: str | Path | None = None, warm: bool = True) -> None:
        """Send the start command without waiting: several processes then load and warm up side by side."""
        msg: dict[str, Any] = {"cmd": "start", "job": self.job_dict, "warm": warm}
        if load_dir is not None:
            msg["load"] = str(load_dir)
        self.post(msg)

    def started(self) -> dict[str, Any]:
        """Wait for the answer to :meth:`post_start`."""
        self.info = self.answer()
        return self.info

    def wait_ready(self) -> dict[str, Any]:
        """Return once the process has imported its libraries (it does so before reading any command)."""
        return self.request({"cmd": "ping"})

    def request(self, msg: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one command and wait for its one-line reply; a dead or silent server raises ServerError."""
        self.post(msg)
        return self.answer(timeout_s)

    def post(self, msg: dict[str, Any]) -> None:
        """Send one command; :meth:`answer` waits for its reply."""
        if self.proc.poll() is not None:
            raise ServerError(*self._died())
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ServerError(*self._died()) from None

    def answer(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The reply to the last command posted; a dead or silent server raises ServerError."""
        limit = timeout_s or self.timeout_s
        deadline = time.monotonic() + limit
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                message = f"{self.name}: timed out after {limit:.3g} s without an answer (see {self.log_path})"
                raise ServerError(message, failures.TIMEOUT)
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    try:
                        self.proc.wait(10)
                    except subprocess.TimeoutExpired:
                        self.kill()
                    raise ServerError(*self._died())
                reply = json.loads(line)
                if "error" in reply:
                    self.close()
                    raise ServerError(reply["error"], str(reply.get("code") or failures.ERROR))
                return reply

    def _died(self) -> tuple[str, str]:
        """(one line, reason code) for a process that died or exited without answering."""
        code = self.proc.poll()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            what = f"was killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
        else:
            what = f"exited with code {code}"
        try:
            lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        last = f": {lines[-1][:200]}" if lines else ""
        reason = failures.KILLED if code is not None and code < 0 else failures.CRASHED
        return f"{self.name} measurement process {what}{last} (see {self.log_path})", reason

    def slice(self, scenario: ScenarioConfig, seconds: float, calls: int) -> list[float]:
        budget = max(120.0, 10 * seconds)
        msg = {"cmd": "slice", "scenario": scenario.name, "seconds": seconds, "min_calls": calls}
        return self.request(msg, budget)["samples"]

    def measure(self, scenario: ScenarioConfig) -> None:
        """Time the scenario alone, its whole budget at once (no pairing)."""
        self.request({"cmd": "measure", "scenario": scenario.name}, max(120.0, 4 * scenario.max_seconds))

    def accuracy(self) -> dict[str, Any]:
        return self.request({"cmd": "accuracy"}).get("accuracy", {})

    def finish(self) -> list[dict[str, Any]]:
        try:
            return self.request({"cmd": "finish"})["rows"]
        finally:
            self.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
