"""``explanations.md``: why each failed, skipped, slower-than-fp32 or over-budget variant is so, and what the answer
rests on. A failure's next step follows from the reason code its row carries (:mod:`bench.run.failures`), never
from the words of its message."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.report.leaderboard import REFERENCE, num, over_budget

# reason code of a failed row -> the next step a user should take
NEXT_STEP = {
    "timeout": "raise --timeout, or check the log for a hang",
    "out_of_memory": "out of memory: try a smaller --batch-size or fewer --calib-size images",
    "killed": "the process was killed (out of memory?): try a smaller --batch-size or fewer --calib-size images",
    "missing_dependency": "a backend or the hardware it needs is missing: install what the message names",
    "bad_input": "the recipe does not fit this model or data: the message says what to change",
}
DEFAULT_NEXT_STEP = "see the log for the traceback"


def _latency_cov(rows: list[dict[str, Any]], variant: str, device: str, scenario: Any) -> float:
    for row in rows:
        if row.get("variant") == variant and row.get("device") == device and row.get("scenario") == scenario.name:
            return num(row.get("cov"))
    return math.nan


def _likely_causes(rec: dict[str, Any], fp: dict[str, Any], img_size: float) -> list[str]:
    """Known reasons a variant is slower than FP32 on this hardware: each recipe step's own (its registry entry),
    and tiny inputs."""
    from data.errors import InputError
    from optim.recipe import parse

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


def _failed(rec: dict[str, Any], head: str, log_dir: Path | None) -> str:
    error = str(rec.get("note") or "").removeprefix("failed: ")
    log = Path(log_dir) / f"{_safe(str(rec['variant']))}.log" if log_dir is not None else None
    log_txt = f" Log: {log}" if log and log.is_file() and str(log) not in error else ""
    step = NEXT_STEP.get(str(rec.get("reason_code") or ""), DEFAULT_NEXT_STEP)
    return f"{head}: failed: {error}. Next step: {step}.{log_txt}"


def _safe(recipe: str) -> str:
    from bench.run.process import safe_name

    return safe_name(recipe)


def _slower(rec: dict[str, Any], rows: list[dict[str, Any]], report: Any, img_size: float) -> list[str]:
    slower = [text for s in report.scenarios if (text := s.slower_explanation(rec))]
    if not slower:
        return []
    parts = ["Slower than fp32 (" + "; ".join(slower) + ")"]
    rank = next(s for s in report.scenarios if s.ranks)
    speed = num(rec.get(rank.speedup_column))
    name, device = rec["variant"], rec["device"]
    noise = max(_latency_cov(rows, name, device, rank), _latency_cov(rows, REFERENCE, device, rank))
    if not math.isnan(speed) and not math.isnan(noise) and speed < 1.0 and 1.0 - speed < min(2 * noise, 0.1):
        parts.append(f"The {rank.label} gap is within the measurement noise (latency CoV up to {noise:.0%})")
    elif not math.isnan(noise) and noise > 0.3:
        parts.append(f"The latency samples are noisy (CoV up to {noise:.0%}; was the machine busy)")
    if causes := _likely_causes(rec, report.machine, img_size):
        parts.append("Likely causes: " + "; ".join(causes))
    return parts


def explain(report: Any, log_dir: Path | None = None) -> list[str]:
    """One Markdown bullet per failed, skipped, slower-than-FP32 or over-budget variant, saying why, then the
    caveats of the answer."""
    rows = report.rows
    img_sizes = [num(r.get("img_size")) for r in rows if r.get("img_size") is not None]
    img_size = img_sizes[0] if img_sizes else math.nan
    lines = []
    for rec in report.df.to_dict("records"):
        head = f"- **{rec['variant']}** ({rec['device']})"
        if rec["status"] == "failed":
            lines.append(_failed(rec, head, log_dir))
        elif rec["status"] == "skipped":
            lines.append(f"{head}: skipped: {str(rec.get('note') or '').removeprefix('skipped: ')}")
        elif rec["status"] == "ok" and rec["variant"] != REFERENCE:
            parts = _slower(rec, rows, report, img_size)
            if over_budget(rec):
                agree = num(rec.get("agreement"))
                agree_txt = f", agrees with fp32 on {agree:.1f}% of images" if not math.isnan(agree) else ""
                drop = num(rec.get("top1_drop"))
                parts.append(f"Over the top-1 budget: drop {drop:.2f} > {report.max_drop:g} points{agree_txt}")
            if parts:
                lines.append(f"{head}: " + ". ".join(parts) + ".")
    return lines + [f"- {sentence}" for _, sentence in report.caveats]


def text(report: Any, run_dir: Path) -> str:
    """The explanations as the console prints them after the table (empty when there is nothing to explain)."""
    lines = explain(report, Path(run_dir) / "logs")
    return "Why some variants failed, are slower than fp32 or are over budget:\n" + "\n".join(lines) if lines else ""


def write(report: Any, run_dir: Path) -> dict[str, Path]:
    """``explanations.md``."""
    path = Path(run_dir) / "explanations.md"
    body = text(report, run_dir) or "Every variant was measured, none is slower than fp32 or over the budget."
    path.write_text(
        f"# Explanations for run {report.config.get('run_id', Path(run_dir).name)}\n\n{report.answer}\n\n"
        f"{report.machine_line()}.\n\n{body}\n"
    )
    return {"explanations": path}
