"""Everything a finished sweep writes besides results.jsonl: the leaderboard files and the answer line,
``pareto.png``, ``explanations.md`` (why each failed, slower or over-budget variant is so), TensorBoard
scalars, and a W&B run when asked. Each output is written from the same leaderboard frame.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.answer import answer_line, best_within_budget
from bench.report.leaderboard import REFERENCE, build_leaderboard, over_budget
from bench.report.tables import console_table, write_leaderboard


@dataclass
class ReportOutputs:
    table: str  # the console leaderboard, followed by the explanations when there are any
    answer: str
    files: dict[str, Path] = field(default_factory=dict)
    explanations: str = ""
    trackers: dict[str, Any] = field(default_factory=dict)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def run_fingerprint(rows: list[dict[str, Any]], device: str | None) -> dict[str, Any]:
    """The fingerprint the rows carry (the measuring processes'), else this process's."""
    for row in rows:
        if isinstance(row.get("fingerprint"), dict):
            return row["fingerprint"]
    from models.machine import fingerprint

    return fingerprint(device or "cpu")


def _latency_cov(rows: list[dict[str, Any]], variant: str, device: str) -> float:
    for row in rows:
        if row.get("variant") == variant and row.get("device") == device and row.get("scenario") == "latency":
            return _num(row.get("cov"))
    return math.nan


def _likely_causes(rec: dict[str, Any], fp: dict[str, Any], img_size: float) -> list[str]:
    """Known reasons a variant is slower than FP32 on this hardware: each recipe step's own (its registry entry),
    and tiny inputs."""
    from data.errors import InputError
    from optim.recipe import parse

    causes: list[str] = []
    try:
        causes = parse(str(rec.get("recipe") or rec.get("variant"))).slow_hints(
            str(rec.get("device") or "cpu"), set(fp.get("cpu_flags") or [])
        )
    except InputError:  # a row from a recipe this version no longer knows
        causes = []
    if not math.isnan(img_size) and img_size <= 64:
        causes.append(
            f"the input is tiny ({img_size:g} px): fixed per-call overheads dominate, so these ratios do not carry "
            "over to full-size models"
        )
    return causes


def _failure_hint(error: str) -> str:
    text = error.lower()
    if "timed out" in text:
        return "raise --timeout, or check the log for a hang"
    if "sigkill" in text or "out of memory" in text or "outofmemory" in text:
        return "out of memory: try a smaller --batch-size or fewer --calib-size images"
    if "missingdependency" in text or "no module named" in text or "pip install" in text:
        return "a backend is not installed: install the extra the message names"
    if "needs a cuda device" in text or "cuda" in text and "not available" in text:
        return "this recipe needs a GPU"
    return "see the log for the traceback"


def _log_path(log_dir: Path | None, recipe: str, device: str) -> Path | None:
    """Where the variant's builder process wrote its output (:func:`bench.run.sides.spawn_side`)."""
    if log_dir is None:
        return None
    from bench.run.process import safe_name

    return Path(log_dir) / f"{safe_name(recipe)}.log"


def explain(
    df: pd.DataFrame,
    rows: list[dict[str, Any]],
    max_drop: float,
    fp: dict[str, Any],
    log_dir: Path | None = None,
) -> list[str]:
    """One Markdown bullet per failed, skipped, slower-than-FP32 or over-budget variant, saying why."""
    img_sizes = [_num(r.get("img_size")) for r in rows if r.get("img_size") is not None]
    img_size = img_sizes[0] if img_sizes else math.nan
    quick = any(r.get("quick") for r in rows)
    lines = []
    for rec in df.to_dict("records"):
        name, device, status = rec["variant"], rec["device"], rec["status"]
        head = f"- **{name}** ({device})"
        if status == "failed":
            error = str(rec.get("note") or "").removeprefix("failed: ")
            log = _log_path(log_dir, name, device)
            log_txt = f" Log: {log}" if log and log.is_file() and str(log) not in error else ""
            lines.append(f"{head}: failed: {error}. Next step: {_failure_hint(error)}.{log_txt}")
            continue
        if status == "skipped":
            lines.append(f"{head}: skipped: {str(rec.get('note') or '').removeprefix('skipped: ')}")
            continue
        if status != "ok" or name == REFERENCE:
            continue
        speed, tspeed = _num(rec.get("speedup_vs_fp32")), _num(rec.get("throughput_speedup_vs_fp32"))
        slower = []
        if not math.isnan(speed) and speed < 1.0:
            slower.append(f"{speed:.2f}x fp32 speed at batch 1")
        if not math.isnan(tspeed) and tspeed < 1.0:
            slower.append(f"{tspeed:.2f}x fp32 throughput at batch {int(_num(rec.get('throughput_batch')) or 0)}")
        parts = []
        if slower:
            parts.append("Slower than fp32 (" + "; ".join(slower) + ")")
            noise = max(_latency_cov(rows, name, device), _latency_cov(rows, REFERENCE, device))
            if not math.isnan(speed) and not math.isnan(noise) and speed < 1.0 and 1.0 - speed < min(2 * noise, 0.1):
                parts.append(f"The batch-1 gap is within the measurement noise (latency CoV up to {noise:.0%})")
            elif not math.isnan(noise) and noise > 0.3:
                parts.append(f"The latency samples are noisy (CoV up to {noise:.0%}; was the machine busy)")
            causes = _likely_causes(rec, fp, img_size)
            if causes:
                parts.append("Likely causes: " + "; ".join(causes))
        if over_budget(rec):
            agree = _num(rec.get("agreement"))
            agree_txt = f", agrees with fp32 on {agree:.1f}% of images" if not math.isnan(agree) else ""
            parts.append(
                f"Over the top-1 budget: drop {_num(rec.get('top1_drop')):.2f} > {max_drop:g} points{agree_txt}"
            )
        if parts:
            lines.append(f"{head}: " + ". ".join(parts) + ".")
    if lines and quick:
        lines.append("- measured with --quick (short warm-up and timing): repeat without it before deciding.")
    return lines


def by_hardware(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows measured on several kinds of machine (a cluster) get the kind in their device label ("cpu @ Xeon ..."),
    so every comparison, speedup and answer stays within one kind of hardware."""
    from models.machine import hardware_kind

    kinds = {
        hardware_kind(r["fingerprint"], str(r.get("device"))) for r in rows if isinstance(r.get("fingerprint"), dict)
    }
    if len(kinds) < 2:
        return rows
    out = []
    for row in rows:
        fp = row.get("fingerprint")
        if isinstance(fp, dict):
            row = {**row, "device": f"{row.get('device')} @ {hardware_kind(fp, str(row.get('device')))}"}
        out.append(row)
    return out


def _write_explanations(run_dir: Path, df, rows, max_drop: float, fp: dict, answer: str, conf: dict) -> str:
    """``explanations.md``; returns the explanations (empty when there is nothing to explain)."""
    lines = explain(df, rows, max_drop, fp, run_dir / "logs")
    explanations = ""
    if lines:
        explanations = "Why some variants failed, are slower than fp32 or are over budget:\n" + "\n".join(lines)
    (run_dir / "explanations.md").write_text(
        f"# Explanations for run {conf.get('run_id', run_dir.name)}\n\n{answer}\n\n"
        + (explanations or "Every variant was measured, none is slower than fp32 or over the budget.")
        + "\n"
    )
    return explanations


def write_reports(run_dir: Path, rows: list[dict[str, Any]], cfg: Any) -> ReportOutputs:
    """Write every report of a sweep under ``run_dir`` and return what to print.

    ``cfg`` is the run's :class:`~bench.config.RunConfig`. W&B runs when ``cfg.wandb`` or ``WANDB_MODE`` is set
    (not ``disabled``); a tracker failure is reported on stderr and in ``trackers`` and never loses the files
    already written.
    """
    from bench.report.html_page import write_html
    from bench.report.plots import pareto_plot
    from bench.report.tensorboard import log_tensorboard
    from bench.report.wandb_run import log_wandb, wandb_requested

    conf, rows, run_dir = cfg.to_dict(), by_hardware(rows), Path(run_dir)
    max_drop = float(conf.get("max_drop", 1.0))
    device = conf.get("device")
    df = build_leaderboard(rows, max_drop)
    devices = sorted({str(r.get("device")) for r in rows if str(r.get("device", "")).startswith(str(device))}) or [
        device
    ]
    answer = "\n".join(answer_line(df, max_drop, d) for d in devices)
    skipped = max((int(r.get("skipped_images") or 0) for r in rows), default=0)
    if skipped:
        answer += f" ({skipped} unreadable images were left out of the data: --skip-bad-images)"
    files = {f"leaderboard.{k}": p for k, p in write_leaderboard(df, run_dir, answer).items()}
    files["results"] = run_dir / "results.jsonl"
    fp = run_fingerprint(rows, device)

    explanations = _write_explanations(run_dir, df, rows, max_drop, fp, answer, conf)
    files["explanations"] = run_dir / "explanations.md"

    title = f"{conf.get('run_id', run_dir.name)}: {fp.get('cpu_model') or ''} {fp.get('gpu_name') or ''}".strip()
    files["pareto"] = pareto_plot(df, run_dir / "pareto.png", max_drop, title=title)
    files["leaderboard.html"] = write_html(run_dir / "leaderboard.html", df, answer, files["pareto"], fp, conf)

    table = console_table(df)
    trackers: dict[str, Any] = {}
    trackers["tensorboard"] = log_tensorboard(run_dir, df, conf, answer, table)
    files["tensorboard"] = trackers["tensorboard"]
    if wandb_requested(cfg.wandb):
        try:
            first = min((str(r.get("timestamp")) for r in rows if r.get("timestamp")), default="")
            key = f"{run_dir.resolve()}|{first}"
            best = best_within_budget(df, device)
            trackers["wandb"] = log_wandb(run_dir, df, conf, answer, best, files, fp, run_key=key)
            files["wandb"] = trackers["wandb"]["dir"]
        except Exception as exc:  # noqa: BLE001 - the sweep's files are written; say why W&B has nothing
            trackers["wandb_error"] = f"{type(exc).__name__}: {exc}"
            print(f"warning: W&B logging failed ({trackers['wandb_error']}); results are in {run_dir}", file=sys.stderr)
    shown = table + (f"\n\n{explanations}" if explanations else "")
    return ReportOutputs(table=shown, answer=answer, files=files, explanations=explanations, trackers=trackers)
