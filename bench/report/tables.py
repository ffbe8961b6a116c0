"""The leaderboard as files (CSV every column, Markdown the main ones) and as the table printed on the console."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.leaderboard import columns


def _fmt(df: pd.DataFrame) -> pd.DataFrame:
    shown = df.copy()
    for col in shown.columns:
        if str(shown[col].dtype) == "boolean":
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else ("yes" if v else "no")).astype(object)
        elif shown[col].dtype.kind == "f":
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    return shown.fillna("")


def write_leaderboard(
    df: pd.DataFrame, out_dir: str | Path, answer: str, scenarios: list[Any] | None = None, machine: str = ""
) -> dict:
    """``leaderboard.csv`` (every column, numbers as numbers) and ``leaderboard.md`` (the main columns, under the
    answer and the machine that measured them)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"leaderboard.csv": out_dir / "leaderboard.csv", "leaderboard.md": out_dir / "leaderboard.md"}
    df.to_csv(paths["leaderboard.csv"], index=False)
    main_cols = [c for c in columns(scenarios) if c in df.columns]
    head = f"{answer}\n\n{machine}.\n" if machine else f"{answer}\n"
    paths["leaderboard.md"].write_text(f"{head}\n{_fmt(df[main_cols]).to_markdown(index=False)}\n")
    return paths


def console_table(df: pd.DataFrame, scenarios: list[Any]) -> str:
    """The main columns of every scenario, the ranking speedup with its interval, accuracy, size and the note."""
    rank = [s for s in scenarios if s.ranks]
    cols = ["variant", "device", "status", *(c for s in scenarios for c in s.console_columns)]
    cols += [c for s in rank for c in (s.speedup_column, *(s.interval_columns or ()))]
    cols += ["top1", "top1_drop", "size_mb", "note"]
    shown = _fmt(df[[c for c in cols if c in df.columns]])
    shown["note"] = shown["note"].str.slice(0, 70)
    return shown.to_markdown(index=False)


def write(report: Any, run_dir: Path) -> dict[str, Path]:
    return write_leaderboard(report.df, run_dir, report.answer, report.scenarios, report.machine_line())
