"""Everything a finished sweep writes besides results.jsonl: leaderboard files and the answer line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.leaderboard import answer_line, build_leaderboard, console_table, write_leaderboard


@dataclass
class ReportOutputs:
    table: str
    answer: str
    files: dict[str, Path] = field(default_factory=dict)


def write_reports(run_dir: Path, rows: list[dict[str, Any]], conf: dict[str, Any], wandb_enabled: bool = False) -> ReportOutputs:
    max_drop = float(conf.get("max_drop", 1.0))
    df = build_leaderboard(rows, max_drop)
    answer = answer_line(df, max_drop, conf.get("device"))
    files = {f"leaderboard.{k}": p for k, p in write_leaderboard(df, run_dir, answer).items()}
    files["results"] = run_dir / "results.jsonl"
    return ReportOutputs(table=console_table(df), answer=answer, files=files)
