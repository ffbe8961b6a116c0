"""Run directories under ``results/runs/``: names that stay inside it, one sweep per directory at a time, and a
warning when another measurement already holds the machine.

A run id is a name, not a path: ``--run-id ../../x`` would write a whole run outside ``results/runs/``. Two sweeps
writing one run directory would both measure every recipe on the same CPUs and duplicate every row, so a sweep
holds an exclusive ``flock`` on the directory's lock file for as long as it runs. Two sweeps in different
directories on one machine still disturb each other's timings; a machine-wide lock (held by whichever came first)
lets the second one say so.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from data.errors import InputError

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,127}$")
LOCK_FILE = ".lock"
MACHINE_LOCK = Path(tempfile.gettempdir()) / "optbench-measuring.lock"  # OPTBENCH_MACHINE_LOCK moves it


def runs_root() -> Path:
    from data.paths import results_dir

    return results_dir() / "runs"


def check_run_id(run_id: str, option: str = "--run-id") -> str:
    """Refuse anything but a plain folder name that stays inside ``results/runs/``."""
    if not RUN_ID_RE.match(run_id or "") or ".." in run_id:
        raise InputError(
            f"{option} {run_id!r} is not a run name: use letters, digits and . _ - = + (no '/', no '..'), "
            "at most 128 characters"
        )
    root = runs_root().resolve()
    if (root / run_id).resolve().parent != root:
        raise InputError(f"{option} {run_id!r} resolves outside {root}")
    return run_id


def run_dir(run_id: str) -> Path:
    return runs_root() / check_run_id(run_id)


def has_content(path: Path) -> bool:
    return path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir())


def _holder(fh: IO[str]) -> dict[str, Any]:
    fh.seek(0)
    try:
        return json.loads(fh.read() or "{}")
    except json.JSONDecodeError:
        return {}


def _describe(holder: dict[str, Any]) -> str:
    pid = holder.get("pid", "?")
    what = holder.get("run_id") or holder.get("argv") or "?"
    since = holder.get("since")
    return f"process {pid} ({what}{', since ' + since if since else ''})"


class RunLock:
    """Exclusive hold on a run directory for one sweep; a second sweep on the same directory is bad input."""

    def __init__(self, directory: Path, run_id: str) -> None:
        self.directory = directory
        self.run_id = run_id
        self._fh: IO[str] | None = None
        self._machine: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        fh = open(self.directory / LOCK_FILE, "a+")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fh)
            fh.close()
            raise InputError(
                f"run {self.run_id!r} is being measured by {_describe(holder)}; wait for it to finish, or use "
                "another --run-id"
            ) from None
        _write_holder(fh, self.run_id)
        self._fh = fh
        self._machine = _machine_lock(self.run_id)
        return self

    def __exit__(self, *exc: Any) -> None:
        for fh in (self._machine, self._fh):
            if fh is not None:
                fh.truncate(0)
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
        self._fh = self._machine = None


def _write_holder(fh: IO[str], run_id: str) -> None:
    fh.seek(0)
    fh.truncate(0)
    holder = {"pid": os.getpid(), "run_id": run_id, "since": time.strftime("%H:%M:%S"), "argv": " ".join(sys.argv)}
    fh.write(json.dumps(holder))
    fh.flush()


def _machine_lock(run_id: str) -> IO[str] | None:
    """Take the machine-wide lock if it is free; if another measurement holds it, warn and go on without it."""
    try:
        fh = open(os.environ.get("OPTBENCH_MACHINE_LOCK") or MACHINE_LOCK, "a+")  # noqa: SIM115 - held until released
    except OSError:
        return None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fh)
        fh.close()
        print(
            f"warning: another optbench measurement is running on this machine ({_describe(holder)}); both runs' "
            "timings will be disturbed, so compare nothing measured while both run",
            file=sys.stderr,
        )
        return None
    _write_holder(fh, run_id)
    return fh
