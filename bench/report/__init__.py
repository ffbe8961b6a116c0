"""Everything a finished run writes besides ``results.jsonl``: one :class:`~bench.report.report.Report` handed to
every writer in :data:`WRITERS`, each ``write(report, run_dir) -> {name: path}``. A new output format is one module
here and one entry in that list. Every run of ``python -m bench`` (and each run directory of a sweep file) writes
through it, and so does ``pytest bench`` (:mod:`bench.suite_report`), besides pytest-benchmark's JSON."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# In order: a later writer may use what an earlier one wrote (the page embeds the plots).
WRITERS = (
    "bench.report.tables",
    "bench.report.explanations",
    "bench.report.plots",
    "bench.report.html_page",
    "bench.report.tensorboard",
    "bench.report.wandb_run",
)


@dataclass
class ReportOutputs:
    table: str  # the console leaderboard, followed by the explanations when there are any
    answer: str
    files: dict[str, Path] = field(default_factory=dict)
    explanations: str = ""


def write_report(report: Any, run_dir: Path) -> dict[str, Path]:
    """Every writer of :data:`WRITERS` on ``report``; returns what each wrote, by name."""
    for name in WRITERS:
        report.files.update(importlib.import_module(name).write(report, Path(run_dir)))
    return report.files


def write_reports(run_dir: Path, rows: list[dict[str, Any]], cfg: Any) -> ReportOutputs:
    """Build the report of a sweep (``cfg``: its :class:`~bench.config.RunConfig`), write every output under
    ``run_dir`` and return what to print."""
    from bench.report import explanations
    from bench.report.report import build_report
    from bench.report.tables import console_table

    report = build_report(rows, cfg.to_dict(), wandb=bool(cfg.wandb))
    report.files["results"] = Path(run_dir) / "results.jsonl"
    write_report(report, run_dir)
    why = explanations.text(report, Path(run_dir))
    table = f"{report.machine_line()}.\n" + console_table(report.df, report.scenarios)
    shown = table + (f"\n\n{why}" if why else "")
    return ReportOutputs(table=shown, answer=report.answer, files=report.files, explanations=why)


__all__ = ["WRITERS", "ReportOutputs", "write_report", "write_reports"]
