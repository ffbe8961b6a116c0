"""Experiment trackers for a finished sweep: TensorBoard scalars (always) and Weights & Biases (opt-in).

Both are fed the leaderboard, not raw rows, so what a tracker shows is exactly what ``leaderboard.csv``
says. Both libraries are imported inside the functions: importing :mod:`bench` never loads them.
"""

from __future__ import annotations

import math
import netrc
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from bench.leaderboard import COLUMNS, TEXT_COLUMNS
from models.errors import MissingDependencyError

# One TensorBoard tag per numeric leaderboard column; the step is the variant's position in the sweep.
METRICS = tuple(c for c in COLUMNS if c not in TEXT_COLUMNS)
TENSORBOARD_DIR = "tensorboard"
WANDB_PROJECT = "optbench"


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def variant_order(df: pd.DataFrame, recipes: list[str] | None) -> list[str]:
    """Variants in sweep order (stable across resumes and re-runs), then any others by name."""
    names = [str(v) for v in df["variant"]]
    ordered = [r for r in (recipes or []) if r in names]
    return ordered + sorted(n for n in names if n not in ordered)


def log_tensorboard(run_dir: Path, df: pd.DataFrame, conf: dict[str, Any], answer: str, table_md: str) -> Path:
    """Write ``<run_dir>/tensorboard/leaderboard``: a scalar tag per metric, one step per variant, text tables.

    The folder is rewritten on every report (a resumed sweep reports all its rows again), so steps are
    never duplicated. ``tensorboard --logdir results/runs`` shows every run beside the profiler traces.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # tensorboard is a core dependency; a broken install should say what is missing
        raise MissingDependencyError(f"TensorBoard logging needs the tensorboard package ({exc})") from None

    logdir = Path(run_dir) / TENSORBOARD_DIR / "leaderboard"
    if logdir.exists():
        shutil.rmtree(logdir)
    order = variant_order(df, conf.get("recipes"))
    with SummaryWriter(log_dir=str(logdir)) as writer:
        for device in sorted(df["device"].dropna().astype(str).unique()):
            on_device = df[df["device"] == device]
            suffix = f"/{device}" if df["device"].nunique() > 1 else ""
            for step, name in enumerate(order):
                rows = on_device[on_device["variant"] == name]
                if rows.empty or rows.iloc[0]["status"] != "ok":
                    continue
                rec = rows.iloc[0]
                for metric in METRICS:
                    value = _num(rec.get(metric))
                    if not math.isnan(value):
                        writer.add_scalar(f"{metric}{suffix}", value, step)
        steps = "\n".join(f"| {i} | {name} |" for i, name in enumerate(order))
        writer.add_text("variants", f"| step | variant |\n|---|---|\n{steps}", 0)
        writer.add_text("leaderboard", f"{answer}\n\n{table_md}", 0)
        writer.add_text("answer", answer, 0)
    return logdir


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return (
            netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1]) is not None
        )
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_requested(flag: bool) -> bool:
    """``--wandb``, or ``WANDB_MODE`` set to anything but ``disabled``."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    return bool(flag) or (mode not in ("", "disabled"))


def _table_frame(df: pd.DataFrame) -> pd.DataFrame:
    """W&B tables want one type per column: numeric columns become floats (NaN when missing), others strings."""
    out = df.copy()
    for col in out.columns:
        present = out[col].notna()
        numeric = pd.to_numeric(out[col], errors="coerce")
        if (numeric.notna() == present).all():
            out[col] = numeric.astype(float)
        else:
            out[col] = [str(v) if ok else "" for v, ok in zip(out[col], present, strict=True)]
    return out


def log_wandb(
    run_dir: Path,
    df: pd.DataFrame,
    conf: dict[str, Any],
    answer: str,
    best: pd.Series | None,
    files: dict[str, Path],
    fingerprint: dict[str, Any],
    run_key: str = "",
) -> dict[str, Any]:
    """One W&B run per sweep: config, the leaderboard table, the best variant's metrics, the plot, the files.

    Without an API key (and no ``WANDB_MODE``) it runs offline under ``<run_dir>/wandb`` and says how to
    upload it with ``wandb sync``. The W&B id is the run id plus a hash of ``run_key`` (the sweep's first
    row timestamp and folder): a resumed sweep continues its own W&B run, and two sweeps that reuse a
    run id (``--run-id pr`` in CI) never write into each other's run. Returns where the run lives and in
    which mode.
    """
    import hashlib

    try:
        import wandb
    except ImportError:
        raise MissingDependencyError("--wandb needs the wandb package: pip install 'wandb>=0.18'") from None

    mode = os.environ.get("WANDB_MODE", "").strip().lower() or ("online" if _has_api_key() else "offline")
    if mode in ("dryrun",):
        mode = "offline"
    run_id = str(conf.get("run_id") or Path(run_dir).name)
    config = {
        "checkpoint": conf.get("ckpt"),
        "arch": conf.get("arch"),
        "data": conf.get("data_spec"),
        "device": conf.get("device"),
        "recipes": conf.get("recipes"),
        "quick": conf.get("quick"),
        "threads": conf.get("threads"),
        "batch_size": conf.get("batch_size"),
        "max_drop": conf.get("max_drop"),
        "calib_size": conf.get("calib_size"),
        "seed": conf.get("seed"),
        "fingerprint": fingerprint,
    }
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
        name=run_id,
        id=re.sub(r"[^A-Za-z0-9_-]", "-", run_id)[:55] + "-" + hashlib.sha1(run_key.encode()).hexdigest()[:8],
        resume="allow",
        dir=str(run_dir),
        config=config,
        mode=mode,
        job_type="sweep",
        tags=[str(conf.get("device") or "cpu")],
    )
    try:
        run.log({"leaderboard": wandb.Table(dataframe=_table_frame(df))})
        summary: dict[str, Any] = {"answer": answer}
        if best is not None:
            summary["best_variant"] = str(best["variant"])
            for key in ("latency_p50_ms", "latency_p99_ms", "throughput_img_s", "speedup_vs_fp32", "top1", "top1_drop"):
                value = _num(best.get(key))
                if not math.isnan(value):
                    summary[f"best_{key}"] = value
        run.summary.update(summary)
        if files.get("pareto") and Path(files["pareto"]).is_file():
            run.log({"pareto": wandb.Image(str(files["pareto"]))})
        artifact = wandb.Artifact(f"leaderboard-{run.id}", type="benchmark-results", description=answer[:1000])
        for key in ("leaderboard.csv", "results", "explanations", "leaderboard.md"):
            path = files.get(key)
            if path and Path(path).is_file():
                artifact.add_file(str(path))
        run.log_artifact(artifact)
        run_path = Path(run.dir).parent  # .../wandb/offline-run-<time>-<id> (run.dir is its files/ folder)
    finally:
        run.finish()
    if mode == "offline":
        print(f"W&B: offline run saved in {run_path}; upload it with: wandb sync {run_path}", file=sys.stderr)
    else:
        print(f"W&B: logged run {run_id} ({mode})", file=sys.stderr)
    return {"mode": mode, "dir": run_path}
