"""The sweep as one Weights & Biases run, only when asked (``--wandb``): config = the run configuration, the
leaderboard as a Table with a latency-vs-top-1 scatter and a speedup bar chart, the best variant's figures in the
summary, and the leaderboard files.

Without an API key it runs offline under ``<run_dir>/wandb``, and that folder is self-contained: W&B stages an
artifact's files under ``~/.local/share/wandb`` by default, which a run folder copied off a CI machine would sync
without, so the staging folder is put inside the run folder and the files are also saved with the run itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import netrc
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.leaderboard import num
from data.errors import MissingDependencyError

WANDB_PROJECT = "optbench"
ACCURACY_KEYS = ("top1", "top1_drop")


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1]
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_requested(flag: bool) -> bool:
    """Only ``--wandb`` turns W&B on (``WANDB_MODE=disabled`` still turns it off)."""
    return bool(flag) and os.environ.get("WANDB_MODE", "").strip().lower() != "disabled"


def table_frame(df: pd.DataFrame) -> pd.DataFrame:
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


@contextlib.contextmanager
def _staging_inside(run_dir: Path) -> Iterator[None]:
    """Artifact staging in the run folder for the duration of the logging (see the module docstring)."""
    saved = os.environ.get("WANDB_DATA_DIR")
    os.environ["WANDB_DATA_DIR"] = str((run_dir / "wandb" / "staging").resolve())
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("WANDB_DATA_DIR", None)
        else:
            os.environ["WANDB_DATA_DIR"] = saved


def _log_tables(run: Any, wandb: Any, df: pd.DataFrame, scenarios: list[Any]) -> None:
    """The leaderboard, and per scenario its figure against top-1 and its speedup by variant."""
    table = wandb.Table(dataframe=table_frame(df))
    run.log({"leaderboard": table})
    ok = table_frame(df[df["status"] == "ok"])
    if ok.empty:
        return
    measured = wandb.Table(dataframe=ok)
    charts = {}
    for s in scenarios:
        if s.headline_column in ok.columns:
            title = f"{s.name}: {s.headline_column} ({s.unit}) vs top-1 (%)"
            charts[f"{s.name}_vs_top1"] = wandb.plot.scatter(measured, s.headline_column, "top1", title=title)
        if s.speedup_column in ok.columns:
            title = f"{s.name}: speedup vs fp32"
            charts[f"{s.name}_speedup"] = wandb.plot.bar(measured, "variant", s.speedup_column, title=title)
    run.log(charts)


def _summary(answer: str, best: Any, scenarios: list[Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"answer": answer}
    if best is not None:
        keys = [k for s in scenarios for k in (*s.console_columns, s.speedup_column) if k] + list(ACCURACY_KEYS)
        summary["best_variant"] = str(best["variant"])
        summary.update({f"best_{k}": num(best.get(k)) for k in keys if not math.isnan(num(best.get(k)))})
    return summary


def log_wandb(report: Any, run_dir: Path, run_key: str = "") -> dict[str, Any]:
    """One W&B run per sweep; returns where it lives and in which mode.

    The W&B id is the run id plus a hash of ``run_key`` (the sweep's first row timestamp and folder): a resumed
    sweep continues its own W&B run, and two sweeps that reuse a run id never write into each other's run.
    """
    try:
        import wandb
    except ImportError:
        raise MissingDependencyError("--wandb needs the wandb package: pip install 'wandb>=0.18'") from None
    from bench.report.answer import best_within_budget

    df, conf, answer, files = report.df, report.config, report.answer, report.files
    fingerprint, best = report.machine, best_within_budget(report.df, report.device)
    mode = os.environ.get("WANDB_MODE", "").strip().lower() or ("online" if _has_api_key() else "offline")
    mode = "offline" if mode == "dryrun" else mode
    run_dir = Path(run_dir)
    run_id = str(conf.get("run_id") or run_dir.name)
    wandb_id = re.sub(r"[^A-Za-z0-9_-]", "-", run_id)[:55] + "-" + hashlib.sha1(run_key.encode()).hexdigest()[:8]
    with _staging_inside(run_dir):
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
            name=run_id,
            id=wandb_id,
            resume="allow",
            dir=str(run_dir),
            config={**conf, "fingerprint": fingerprint},
            mode=mode,
            job_type="sweep",
            tags=[str(conf.get("device") or "cpu")],
        )
        try:
            _log_tables(run, wandb, df, report.scenarios)
            run.summary.update(_summary(answer, best, report.scenarios))
            if files.get("pareto") and Path(files["pareto"]).is_file():
                run.log({"pareto": wandb.Image(str(files["pareto"]))})
            artifact = wandb.Artifact(f"leaderboard-{run.id}", type="benchmark-results", description=answer[:1000])
            for key in ("leaderboard.csv", "results", "explanations", "leaderboard.md", "leaderboard.html"):
                path = files.get(key)
                if path and Path(path).is_file():
                    artifact.add_file(str(path))
                    run.save(str(path), base_path=str(Path(path).parent), policy="now")
            run.log_artifact(artifact)
            run_path = Path(run.dir).parent  # .../wandb/offline-run-<time>-<id> (run.dir is its files/ folder)
        finally:
            run.finish()
    if mode == "offline":
        print(f"W&B: offline run saved in {run_path}; upload it with: wandb sync {run_path}", file=sys.stderr)
    else:
        print(f"W&B: logged run {run_id} ({mode})", file=sys.stderr)
    return {"mode": mode, "dir": run_path}


def write(report: Any, run_dir: Path) -> dict[str, Path]:
    """A W&B run when ``--wandb`` asked for one; a failure is a warning: the run's files are written already."""
    if not wandb_requested(report.wandb):
        return {}
    try:
        first = min((str(r.get("timestamp")) for r in report.rows if r.get("timestamp")), default="")
        return {"wandb": log_wandb(report, run_dir, run_key=f"{Path(run_dir).resolve()}|{first}")["dir"]}
    except Exception as exc:  # noqa: BLE001 - the sweep's files are written; say why W&B has nothing
        print(f"warning: W&B logging failed ({type(exc).__name__}: {exc}); results are in {run_dir}", file=sys.stderr)
        return {}
