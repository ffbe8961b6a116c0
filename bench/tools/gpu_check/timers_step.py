"""The timers step: :mod:`bench.tools.gpu_check.timers_check` in a child, writing timers.json into ``--out``.

It rewrites the file after each configuration, so a step stopped at its deadline still hands back what it measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.tools.gpu_check.outputs import TIMERS
from bench.tools.gpu_check.plan import Clock, Plan
from bench.tools.gpu_check.process import Step, run_step

TIMERS_MODULE = "bench.tools.gpu_check.timers_check"


def timers_command(plan: Plan, out: Path) -> list[str]:
    return [
        sys.executable, "-m", TIMERS_MODULE, "--out", str(out), "--device", plan.device,
        "--model", plan.model, "--img-size", str(plan.img_size), "--num-classes", str(plan.num_classes),
        "--batches", ",".join(str(b) for b in plan.timer_batches), "--budget-s", str(plan.timers_s),
        "--min-calls", str(plan.timer_min_calls),
    ]  # fmt: skip


def run_timers(plan: Plan, env: dict[str, str], work: Path, clock: Clock, out_dir: Path) -> Step:
    step = Step("timers")
    out = out_dir / TIMERS
    reserve = plan.pytest_min_s + plan.profile_s + plan.margin_s + 30.0
    budget = min(plan.timers_s + 20.0, clock.left(reserve))
    run_step(step, timers_command(plan, out), env, work / "logs" / "timers.log", budget)
    if out.is_file():
        data = json.loads(out.read_text())
        step.detail = f"{len(data.get('configs', []))} configurations" + ("" if data.get("complete") else " (partial)")
    elif step.status == "ok":
        step.status, step.detail = "failed", f"{TIMERS} was not written"
    return step
