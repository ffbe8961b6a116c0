"""Where optbench reads and writes, resolved once against the folder the user ran the command in.

A command starts processes (measurement servers, Ray workers, a gate's checkouts) that may run in another working
directory, so nothing a process is handed may be relative: every path the user typed is made absolute by the
command before any process starts, and the results folder is exported as an absolute ``OPTBENCH_RESULTS`` that
every child inherits.

- **Results** (run directories, saved variants): ``--results DIR``, else ``$OPTBENCH_RESULTS``, else ``results/`` in
  the folder the command runs in.
- **Cache** (the embedded default checkpoint, image checks, compiled-engine caches): ``$OPTBENCH_CACHE``, else
  ``$XDG_CACHE_HOME/optbench``, else ``~/.cache/optbench``: the same from every folder, so the embedded default is
  trained once per machine, not once per folder.
"""

from __future__ import annotations

import os
from pathlib import Path

RESULTS_ENV = "OPTBENCH_RESULTS"
CACHE_ENV = "OPTBENCH_CACHE"


def absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~`` expanded, made absolute against the current folder (symlinks kept as the user named them)."""
    return Path(path).expanduser().absolute()


def results_dir() -> Path:
    """Root of run outputs; ``--results`` or ``OPTBENCH_RESULTS`` moves it."""
    return absolute(os.environ.get(RESULTS_ENV) or "results")


def use_results_dir(option: str | None = None) -> Path:
    """Fix the results folder for this command and every process it starts (called once per command, with
    ``--results`` already checked by the command's parser)."""
    path = absolute(option) if option else results_dir()
    os.environ[RESULTS_ENV] = str(path)
    return path


def cache_dir() -> Path:
    """Caches that do not belong to one run and must be found again from any folder."""
    if os.environ.get(CACHE_ENV):
        return absolute(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return absolute(base) / "optbench"
