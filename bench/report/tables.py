"""The leaderboard as files (CSV, Markdown, HTML) and as the table printed on the console."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.leaderboard import COLUMNS


def _fmt(df: pd.DataFrame) -> pd.DataFrame:
    shown = df.copy()
    for col in shown.columns:
        if str(shown[col].dtype) == "boolean":
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else ("yes" if v else "no")).astype(object)
        elif shown[col].dtype.kind == "f":
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    return shown.fillna("")


def write_leaderboard(df: pd.DataFrame, out_dir: str | Path, answer: str) -> dict[str, Path]:
    """``leaderboard.csv`` (every column, numbers as numbers) and ``leaderboard.md`` (the main columns)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "leaderboard.csv", "md": out_dir / "leaderboard.md"}
    df.to_csv(paths["csv"], index=False)
    main_cols = [c for c in COLUMNS if c in df.columns]
    paths["md"].write_text(f"{answer}\n\n{_fmt(df[main_cols]).to_markdown(index=False)}\n")
    return paths


def console_table(df: pd.DataFrame) -> str:
    cols = [
        "variant",
        "device",
        "status",
        "p50_ms",
        "p99_ms",
        "throughput_img_s",
        "speedup_vs_fp32",
        "speedup_ci95_low",
        "speedup_ci95_high",
        "top1",
        "top1_drop",
        "size_mb",
        "note",
    ]
    shown = _fmt(df[[c for c in cols if c in df.columns]])
    shown["note"] = shown["note"].str.slice(0, 70)
    return shown.to_markdown(index=False)
