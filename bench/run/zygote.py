"""Measurement processes forked from one process that has imported torch and timm already.

A fresh interpreter's first work would be importing torch and timm, seconds of CPU each time
(docs/measurement.md), while a sweep starts three processes per variant (a builder and two loaded copies) and a
test run hundreds. Here multiprocessing's forkserver imports them once, in a process that runs nothing else (no
model built, nothing compiled, no CUDA context, no torch thread pool started), and each measurement process is a
fork of it: the same code, started in milliseconds.

A forked process is made to be the process ``python -m bench.run.server`` would have been: it takes the
coordinator's environment (thread counts included), working directory, import path and CPU affinity as they are
when it is asked for, not as they were when the forkserver started. What torch, timm and numpy read once at their
import (numpy's BLAS pool, timm's environment switches) stays as the forkserver had it; torch's thread count is set
again by every job. Where that cannot hold, a fresh interpreter is started as before: for another checkout's code
(the gate's A/B mode), inside a Ray worker, wherever ``OPTBENCH_SPAWN=subprocess`` is set, and if the forkserver
cannot be started. As with any multiprocessing program, a script that starts a sweep itself needs the
``if __name__ == "__main__":`` guard (each process re-imports the script it was started from).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PRELOAD = ["torch", "timm"]
_context: Any = None
_children: list[Any] = []


def forking_enabled() -> bool:
    """Whether measurement processes are forked (the default on Linux) or started as fresh interpreters."""
    return sys.platform == "linux" and os.environ.get("OPTBENCH_SPAWN", "fork") != "subprocess"


def _forkserver() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
        # Before multiprocessing's exit hook joins its children (which would wait on servers waiting for commands).
        multiprocessing.util.Finalize(None, _kill_leftovers, exitpriority=100)
    return _context


def _kill_leftovers() -> None:
    for child in _children:
        if child.poll() is None:
            child.kill()


def _affinity() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


class ForkedProcess:
    """A forked measurement process behind the part of ``subprocess.Popen`` the client uses (pipes, poll, kill)."""

    def __init__(self, log_path: Path, cwd: str, env: dict[str, str]) -> None:
        ctx = _forkserver()
        commands_in, commands_out = ctx.Pipe(duplex=False)
        replies_in, replies_out = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=serve_forked,
            args=(dict(env), cwd, _affinity(), str(log_path), commands_in, replies_out),
            name=f"optbench-server:{Path(log_path).stem}",
        )
        self._process.start()
        commands_in.close()
        replies_out.close()
        self.stdin = os.fdopen(os.dup(commands_out.fileno()), "w", buffering=1)
        self.stdout = os.fdopen(os.dup(replies_in.fileno()), "r")
        commands_out.close()
        replies_in.close()
        self.pid = self._process.pid
        _children[:] = [child for child in _children if child.poll() is None] + [self]

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(f"measurement process {self.pid}", timeout or 0)
        return code

    def kill(self) -> None:
        if self._process.exitcode is None:
            self._process.kill()


def serve_forked(
    env: dict[str, str], cwd: str, affinity: list[int] | None, log_path: str, commands_in: Any, replies_out: Any
) -> None:
    """The forked process: become what a fresh ``python -m bench.run.server`` would have been, then serve."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for entry in reversed([p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]):
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
    if affinity:
        try:
            os.sched_setaffinity(0, affinity)
        except OSError:
            pass
    commands = os.fdopen(os.dup(commands_in.fileno()), "r")
    reply = os.fdopen(os.dup(replies_out.fileno()), "w", buffering=1)
    commands_in.close()
    replies_out.close()
    from bench.run.server import serve

    code = serve(commands, reply, log_path)
    sys.stdout.flush()
    release_semaphores()
    os._exit(code)  # as the server's own entry point: compiled graphs and ORT pools can hang an orderly exit


def release_semaphores() -> None:
    """Unlink the named semaphores this process made (data loaders' queues make them) before ``os._exit``.

    ``os._exit`` skips the finalizers that would: the forkserver's resource tracker then unlinks them when the
    sweep ends and prints a warning about leaked semaphores that is not the user's problem. Only those
    finalizers run here; the others (pools, queues' feeder threads) are what can hang an orderly exit."""
    from multiprocessing import synchronize, util

    registry = getattr(util, "_finalizer_registry", {})
    for finalizer in list(registry.values()):
        if getattr(finalizer, "_callback", None) is synchronize.SemLock._cleanup:
            try:
                finalizer()
            except OSError:  # already gone
                continue


def spawn(log_path: Path, cwd: str, env: dict[str, str], fresh_interpreter: bool = False) -> Any:
    """A measurement process serving the line protocol of :mod:`bench.run.server` on ``.stdin`` / ``.stdout``."""
    if forking_enabled() and not fresh_interpreter:
        try:
            return ForkedProcess(log_path, cwd, env)
        except (OSError, EOFError, RuntimeError) as exc:  # the forkserver could not start or died: the old way
            print(
                f"warning: measurement processes start as fresh interpreters ({type(exc).__name__}: {exc})",
                file=sys.stderr,
            )
            os.environ["OPTBENCH_SPAWN"] = "subprocess"
    return subprocess.Popen(
        [sys.executable, "-m", "bench.run.server", "--log", str(log_path)],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
