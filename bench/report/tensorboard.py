"""The leaderboard in TensorBoard: one HParams row per variant (sortable by any metric), plus the answer and the
table as text. ``tensorboard --logdir results/runs`` shows every run beside the profiler traces.

The folder is rewritten on every report (a resumed sweep reports all its rows again), so nothing is duplicated.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.leaderboard import TEXT_COLUMNS, columns, num
from data.errors import MissingDependencyError

TENSORBOARD_DIR = "tensorboard"


def variant_order(df: pd.DataFrame, recipes: list[str] | None) -> list[str]:
    """Variants in sweep order (stable across resumes and re-runs), then any others by name."""
    names = [str(v) for v in df["variant"]]
    ordered = [r for r in (recipes or []) if r in names]
    return ordered + sorted(n for n in names if n not in ordered)


def log_tensorboard(
    run_dir: Path, df: pd.DataFrame, conf: dict[str, Any], answer: str, table_md: str, scenarios: list | None = None
) -> Path:
    """Write ``<run_dir>/tensorboard/leaderboard``: an HParams session per measured variant and text tables."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # tensorboard is a core dependency; a broken install should say what is missing
        raise MissingDependencyError(f"TensorBoard logging needs the tensorboard package ({exc})") from None

    metrics_shown = [c for c in columns(scenarios) if c not in TEXT_COLUMNS]
    logdir = Path(run_dir) / TENSORBOARD_DIR / "leaderboard"
    if logdir.exists():
        shutil.rmtree(logdir)
    with SummaryWriter(log_dir=str(logdir)) as writer:
        for position, name in enumerate(variant_order(df, conf.get("recipes"))):
            for _, rec in df[df["variant"] == name].iterrows():
                if rec["status"] != "ok":
                    continue
                hparams = {"variant": name, "device": str(rec["device"]), "sweep_position": position}
                if "hardware" in rec and isinstance(rec["hardware"], str):
                    hparams["hardware"] = rec["hardware"]
                metrics = {f"hparam/{m}": num(rec.get(m)) for m in metrics_shown if not math.isnan(num(rec.get(m)))}
                writer.add_hparams(hparams, metrics, run_name=f"{position:02d}-{name}-{rec['device']}")
        writer.add_text("leaderboard", f"{answer}\n\n{table_md}", 0)
        writer.add_text("answer", answer, 0)
    return logdir


def write(report: Any, run_dir: Path) -> dict[str, Path]:
    from bench.report.tables import console_table

    table = console_table(report.df, report.scenarios)
    return {"tensorboard": log_tensorboard(run_dir, report.df, report.config, report.answer, table, report.scenarios)}
