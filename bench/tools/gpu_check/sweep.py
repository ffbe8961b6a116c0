"""The sweep step: one paired ``python -m bench`` of the plan's recipes, stopped at its deadline, rows kept.

Each variant's build or measurement is capped by ``--timeout`` so one slow compile cannot take the others' time;
what the sweep wrote before it was stopped becomes results.jsonl (raw samples left out) and a leaderboard.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.results_io import RESULTS_FILE, read_rows
from bench.tools.gpu_check.outcomes import outcome_table, recipe_outcomes, trimmed
from bench.tools.gpu_check.outputs import LEADERBOARD, RESULTS
from bench.tools.gpu_check.plan import Clock, Plan
from bench.tools.gpu_check.process import Step, run_step


def sweep_command(plan: Plan, results: Path, run_id: str, timeout_s: float) -> list[str]:
    command = [
        sys.executable, "-m", "bench", "--model", plan.model, "--random-init",
        "--num-classes", str(plan.num_classes), "--img-size", str(plan.img_size), "--device", plan.device,
        "--recipes", ",".join(plan.recipes), "--timeout", str(int(timeout_s)), "--rounds", str(plan.rounds),
        "--run-id", run_id, "--no-progress", "--results", str(results),
    ]  # fmt: skip
    if plan.quick:
        command.append("--quick")
    if plan.throughput_batch:
        command += ["--batch-size", str(plan.throughput_batch)]
    if plan.serve:
        command.append("--serve")
        if plan.serve_minutes is not None:
            command += ["--serve-minutes", f"{plan.serve_minutes:g}"]
    return command + list(plan.sweep_extra)


def run_sweep(
    plan: Plan, env: dict[str, str], work: Path, clock: Clock, out_dir: Path, run_id: str
) -> tuple[Step, list[dict[str, Any]]]:
    """The paired sweep; its rows (trimmed) and a leaderboard into ``out_dir``, and each recipe's outcome."""
    step = Step("sweep")
    budget = clock.left(plan.profile_s + plan.pytest_min_s + plan.margin_s)
    timeout = max(30.0, min(plan.variant_timeout_s, budget * 0.6))
    command = sweep_command(plan, work / "results", run_id, timeout)
    run_step(step, command, env, work / "logs" / "sweep.log", budget)
    run_dir = work / "results" / "runs" / run_id
    rows = read_rows(run_dir / RESULTS_FILE) if (run_dir / RESULTS_FILE).is_file() else []
    (out_dir / RESULTS).write_text("".join(json.dumps(trimmed(r), default=str) + "\n" for r in rows))
    outcomes = recipe_outcomes(plan.recipes, rows, step.status == "stopped")
    write_leaderboard(out_dir, run_dir, step, rows, outcomes)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["status"]] = counts.get(o["status"], 0) + 1
    parts = [", ".join(f"{n} {s}" for s, n in counts.items()), f"--timeout {int(timeout)} s a variant", step.detail]
    if step.status == "failed":
        parts.append(f"exit code {step.returncode}")
    step.detail = "; ".join(x for x in parts if x)
    return step, outcomes


def write_leaderboard(
    out_dir: Path, run_dir: Path, step: Step, rows: list[dict[str, Any]], outcomes: list[dict[str, Any]]
) -> None:
    """The sweep's own leaderboard; one built from its rows when it was stopped before writing it."""
    board = run_dir / "leaderboard.md"
    if board.is_file() and step.status != "stopped":
        shutil.copyfile(board, out_dir / LEADERBOARD)
        return
    head = f"# Leaderboard built by the GPU check from {len(rows)} rows of results.jsonl"
    why = "(the sweep was stopped at its deadline before writing its own)" if step.status == "stopped" else ""
    (out_dir / LEADERBOARD).write_text("\n".join([f"{head} {why}".strip(), "", *outcome_table(outcomes), ""]))
