"""cProfile over a workload: a ``.prof`` for snakeviz / pstats and the top functions as text tables."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from bench.profile.workloads import Workload

SORTS = (("cumulative", "cumulative time (the function and everything it calls)"), ("tottime", "own time"))


@dataclass(frozen=True)
class CProfileResult:
    prof_path: Path
    text_path: Path
    tables: str  # the compact top-N tables printed to the terminal


def short_location(filename: str, line: int, func: str) -> str:
    """A readable location: ``.../site-packages/torch/nn/modules/module.py`` becomes ``torch/nn/modules/module.py``."""
    if filename == "~":
        return func  # built-ins: '<built-in method ...>'
    for marker in ("site-packages/", "dist-packages/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    else:
        cwd = str(Path.cwd()) + "/"
        if filename.startswith(cwd):
            filename = filename[len(cwd) :]
        elif filename.startswith(sys.prefix):
            filename = filename[len(sys.prefix) :].lstrip("/")
    return f"{filename}:{line}({func})"


def top_table(stats: pstats.Stats, sort: str, top: int) -> str:
    """The ``top`` functions by ``sort`` (``cumulative`` or ``tottime``) as a plain table."""
    index = {"cumulative": 3, "tottime": 2}[sort]
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][index], reverse=True)[:top]  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in entries:
        calls = f"{nc}/{cc}" if nc != cc else str(nc)
        rows.append([calls, f"{tt:.4f}", f"{ct:.4f}", short_location(filename, line, func)])
    return tabulate(rows, headers=["calls", "own s", "cumulative s", "function"], tablefmt="simple")


def run_cprofile(workload: Workload, steps: int, out_dir: Path, top: int = 15) -> CProfileResult:
    """Profile ``steps`` steps (after one unprofiled warm-up step) into ``<out_dir>/<target>.prof`` and ``.txt``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    workload.step()  # warm-up: one-time costs (optimizer state, lazy imports, worker spawn) stay out of the profile
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        for _ in range(steps):
            workload.step()
    finally:
        profiler.disable()
        workload.close()
    prof_path = out_dir / f"{workload.name}.prof"
    profiler.dump_stats(str(prof_path))

    stats = pstats.Stats(str(prof_path))
    header = f"cProfile of {workload.name}: {steps} steps, {stats.total_tt:.3f} s profiled"  # type: ignore[attr-defined]
    sections = [header]
    for sort, meaning in SORTS:
        sections.append(f"top {top} by {sort} ({meaning}):\n{top_table(stats, sort, top)}")
    tables = "\n\n".join(sections)

    full = io.StringIO()
    pstats.Stats(str(prof_path), stream=full).sort_stats("cumulative").print_stats(60)
    text_path = out_dir / f"{workload.name}.cprofile.txt"
    text_path.write_text(tables + "\n\n" + "pstats, sorted by cumulative time:\n" + full.getvalue())
    return CProfileResult(prof_path, text_path, tables)
