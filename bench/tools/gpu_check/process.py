"""Every step as a subprocess of this interpreter, in its own process group, stopped at its deadline.

A step past its time gets SIGINT (the sweep then closes its measurement processes and keeps what it measured),
then SIGKILL; the whole group goes, so nothing a step started outlives the check on a lent machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
KILL_GRACE_S = 10.0  # after SIGINT, before SIGKILL: the sweep closes its measurement processes in that time
LOG_TAIL_LINES = 150


@dataclass
class Step:
    """One step's outcome as the summary reports it."""

    name: str
    status: str = "not run"  # ok | failed | stopped (deadline) | not run
    seconds: float = 0.0
    budget_s: float = 0.0
    command: list[str] = field(default_factory=list)
    returncode: int | None = None
    detail: str = ""
    log: str = ""


def child_env(work: Path, site: Path | None) -> dict[str, str]:
    """The environment of every step: this checkout first on the path, every write inside the scratch folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    env.pop("PYTEST_ADDOPTS", None)  # a -x there would let one failure hide the rest
    paths = [str(REPO), *([str(site)] if site else []), *filter(None, [os.environ.get("PYTHONPATH", "")])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(
        OPTBENCH_RESULTS=str(work / "results"),
        OPTBENCH_CACHE=str(work / "cache"),
        TORCHINDUCTOR_CACHE_DIR=str(work / "inductor"),
        TRITON_CACHE_DIR=str(work / "triton"),
        WANDB_MODE="disabled",
        WANDB_SILENT="true",
        PYTHONUNBUFFERED="1",
        MPLBACKEND=os.environ.get("MPLBACKEND", "Agg"),
    )
    return env


def stop(proc: subprocess.Popen) -> None:
    """SIGINT to the step's process group (it closes its measurement processes), then SIGKILL after a grace."""
    for sig, wait in ((signal.SIGINT, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_step(step: Step, command: list[str], env: dict[str, str], log: Path, timeout_s: float) -> Step:
    """Run ``command`` (output to ``log``) for at most ``timeout_s``; past it the step is ``stopped``."""
    step.command, step.budget_s, step.log = command, round(timeout_s, 1), str(log)
    if timeout_s < 5:
        step.status, step.detail = "not run", "no time left before the deadline"
        return step
    started_at = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO,
            start_new_session=True,  # its own process group: stopping it reaches every process it started
        )  # fmt: skip
        try:
            step.returncode = proc.wait(timeout_s)
            step.status = "ok" if step.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            stop(proc)
            step.returncode = proc.poll()
            step.status, step.detail = "stopped", f"stopped at its deadline ({timeout_s:.0f} s)"
        except KeyboardInterrupt:  # its own process group does not see the user's Ctrl-C: pass it on
            stop(proc)
            raise
    step.seconds = round(time.monotonic() - started_at, 1)
    return step


def capture(command: list[str], env: dict[str, str], timeout_s: float) -> tuple[int | None, str]:
    """(exit code, output) of a short command; (None, why) when it could not run or outlasted ``timeout_s``."""
    return captured(started(command, env), timeout_s)


def started(command: list[str], env: dict[str, str]) -> subprocess.Popen | str:
    """A short command started now (several start side by side: each spends seconds importing torch)."""
    try:
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            env=env, cwd=REPO, start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def captured(proc: subprocess.Popen | str, timeout_s: float) -> tuple[int | None, str]:
    """The exit code and output of a command from :func:`started`; (None, why) if it could not run in time."""
    if isinstance(proc, str):
        return None, proc
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(proc)
        return None, f"no answer within {timeout_s:.0f} s"
    except KeyboardInterrupt:
        stop(proc)
        raise
    return proc.returncode, out


def tail(path: Path | str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
