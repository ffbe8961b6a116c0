"""line_profiler over our own hot functions: the dataset's ``__getitem__``, each transform, the train step.

line_profiler is an optional extra (``pip install '.[profile]'``); it is imported only here, and its
absence is a one-line error naming the extra.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from bench.profile.workloads import Workload
from data.errors import MissingDependencyError

EXTRA_HINT = "pip install '.[profile]'"


def line_profiler_available() -> bool:
    try:
        import line_profiler  # noqa: F401
    except ImportError:
        return False
    return True


def require_line_profiler() -> None:
    if not line_profiler_available():
        raise MissingDependencyError(f"line_profiler is not installed; {EXTRA_HINT} (or pip install line-profiler)")


@dataclass(frozen=True)
class LineProfileResult:
    lprof_path: Path
    text_path: Path
    functions: tuple[str, ...]
    summary: str  # one line per function: total seconds; the full per-line report is in text_path


def _qualname(fn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def run_line_profiler(workload: Workload, steps: int, out_dir: Path) -> LineProfileResult:
    """Profile ``steps`` steps line by line into ``<out_dir>/<target>.lprof`` and ``<target>.lprof.txt``."""
    require_line_profiler()
    from line_profiler import LineProfiler

    out_dir.mkdir(parents=True, exist_ok=True)
    functions = list(workload.line_functions)
    profiler = LineProfiler()
    for fn in functions:
        profiler.add_function(fn)
    workload.step()  # warm-up, unprofiled
    profiler.enable_by_count()
    try:
        for _ in range(steps):
            workload.step()
    finally:
        profiler.disable_by_count()
        workload.close()
    lprof_path = out_dir / f"{workload.name}.lprof"
    profiler.dump_stats(str(lprof_path))

    report = io.StringIO()
    profiler.print_stats(stream=report, output_unit=1e-3, stripzeros=False)
    stats = profiler.get_stats()
    totals: dict[tuple[str, int], float] = {}
    for (filename, first_line, _name), timings in stats.timings.items():
        totals[(filename, first_line)] = sum(t for _line, _hits, t in timings) * stats.unit
    lines = [f"line_profiler of {workload.name}: {steps} steps, {len(functions)} functions"]
    for fn in functions:
        seconds = totals.get((fn.__code__.co_filename, fn.__code__.co_firstlineno), 0.0)
        lines.append(f"  {seconds * 1e3:10.1f} ms  {_qualname(fn)}")
    if not functions:
        lines.append("  (no Python functions to trace: the dataset and transforms are C code)")
    summary = "\n".join(lines)
    text_path = out_dir / f"{workload.name}.lprof.txt"
    text_path.write_text(summary + "\n\n" + report.getvalue())
    return LineProfileResult(lprof_path, text_path, tuple(_qualname(f) for f in functions), summary)
