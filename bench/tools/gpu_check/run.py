"""The whole check: set up (wheels, the machine, the plan), run the four steps against the clock, write the files.

Every step is a child of this interpreter with the checkout on ``PYTHONPATH``; this process only plans, waits and
writes, so a step that crashes or hangs costs its own budget and the summary still says what happened.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.tools.gpu_check.outputs import SUMMARY_MD, prepare_out, write_logs, write_missing
from bench.tools.gpu_check.plan import Clock, Plan, make_plan
from bench.tools.gpu_check.probe import describe_machine, probe_command
from bench.tools.gpu_check.process import Step, captured, child_env, started
from bench.tools.gpu_check.profile_step import run_profile
from bench.tools.gpu_check.pytest_step import run_pytest
from bench.tools.gpu_check.recipes import choose_recipes, recipe_steps, serve_option
from bench.tools.gpu_check.summary import write_summary
from bench.tools.gpu_check.sweep import run_sweep
from bench.tools.gpu_check.timers_step import run_timers
from bench.tools.gpu_check.wheels import unpack_wheels
from data.errors import InputError


@dataclass(frozen=True)
class CheckOptions:
    """The command line, checked: ``recipes`` empty means the plan's, ``None`` values the plan's defaults."""

    out: Path
    wheels: Path | None = None
    device: str = "auto"
    minutes: float | None = None
    recipes: tuple[str, ...] = ()
    rounds: int | None = None
    sweep_args: tuple[str, ...] = ()
    results: Path | None = None


@dataclass
class Setup:
    """What the steps need from the setup: their environment, the machine, the plan, and the setup's own step."""

    env: dict[str, str]
    machine: dict[str, Any]
    wheels: list[dict[str, Any]]
    plan: Plan
    notes: list[str]
    step: Step


def check(options: CheckOptions) -> int:
    """The whole check; exit code 0 when every step ran and nothing failed, 1 otherwise."""
    out_dir = prepare_out(options.out)
    keep = options.results
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="optbench-gpu-check-", dir=keep))
    (work / "logs").mkdir()
    clock = Clock(60.0 * (options.minutes or 8.0))
    try:
        setup = set_up(options, work, clock)
        plan = setup.plan
        print(
            f"gpu check ({'DRY RUN on CPU' if plan.dry else plan.device}): torch {setup.machine['torch']}, "
            f"{(setup.machine.get('gpu') or {}).get('name') or 'no GPU'}; {plan.total_s:.0f} s; -> {out_dir}",
            flush=True,
        )
        steps, outcomes = run_steps(plan, setup.env, work, clock, out_dir)
        steps.insert(0, setup.step)
        write_missing(out_dir)
        write_logs(out_dir, steps, work / "results" / "runs" / plan.run_id, outcomes)
        extra = {"elapsed_s": round(clock.elapsed(), 1), "notes": setup.notes, "work": str(work) if keep else None}
        write_summary(out_dir, plan, setup.machine, setup.wheels, steps, outcomes, extra)
        failed = [s for s in steps if s.status != "ok"] + [o for o in outcomes if o["status"] in ("failed",)]
        print(f"[{clock.elapsed():5.0f} s] summary: {out_dir / SUMMARY_MD}" + (" (DRY RUN)" if plan.dry else ""))
        return 1 if failed else 0
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def set_up(options: CheckOptions, work: Path, clock: Clock) -> Setup:
    """Carried wheels, the machine as the steps see it, the plan for it and the recipes it knows."""
    site, wheels = None, []
    if options.wheels:
        site = work / "site"
        site.mkdir()
        wheels = unpack_wheels(options.wheels, site)
    env = child_env(work, site)
    # three children side by side: each spends seconds importing torch
    listing_proc = started([sys.executable, "-m", "optim", "list"], env)
    help_proc = started([sys.executable, "-m", "bench", "--help"], env)
    unpacked = [w["package"] for w in wheels if w.get("action") == "unpacked"]
    machine = describe_machine(env, started(probe_command(unpacked), env))
    plan = plan_for(machine, options)
    clock.total_s = plan.total_s
    notes = ["DRY RUN: no CUDA device, so the same steps ran on the CPU with a tiny model"] if plan.dry else []
    listed, listing = captured(listing_proc, 120)
    _, help_text = captured(help_proc, 120)
    if listed != 0:  # a listing that failed names no step: check nothing rather than leave every recipe out
        last = (listing.strip().splitlines() or ["no output"])[-1]
        notes.append(f"python -m optim list failed here ({last[:200]}): the recipe names were not checked")
    recipes, more = choose_recipes(
        plan, options.recipes, machine.get("packages") or {}, recipe_steps(listing) if listed == 0 else set()
    )
    serve, serve_note = serve_option(help_text)
    notes += [*more, serve_note]
    plan = replace(
        plan, recipes=recipes, serve=serve, sweep_extra=options.sweep_args, rounds=options.rounds or plan.rounds
    )
    step = Step("setup", status="ok", seconds=round(clock.elapsed(), 1), budget_s=0.0)
    step.detail = f"torch {machine['torch']}; {len(unpacked)} carried wheel(s) unpacked"
    if machine.get("probe_error"):
        step.status, step.detail = "failed", f"the probe failed: {machine['probe_error'][:200]}"
    return Setup(env, machine, wheels, plan, notes, step)


def plan_for(machine: dict[str, Any], options: CheckOptions) -> Plan:
    """The GPU plan where torch sees CUDA (unless ``--device cpu``), else the dry run; bad input when it cannot be."""
    if "torch" not in machine:
        raise InputError(f"torch cannot be imported by {sys.executable}: {machine.get('torch_error') or machine}")
    cuda = bool(machine.get("cuda_available"))
    if options.device == "cuda" and not cuda:
        raise InputError(f"--device cuda, but torch {machine['torch']} on this machine sees no CUDA device")
    return make_plan("gpu" if cuda and options.device != "cpu" else "dry", options.minutes)


def run_steps(
    plan: Plan, env: dict[str, str], work: Path, clock: Clock, out_dir: Path
) -> tuple[list[Step], list[dict[str, Any]]]:
    """Timers, sweep, profile and pytest in that order, each within what the clock leaves it."""
    run_id = plan.run_id
    outcomes: list[dict[str, Any]] = []

    def sweep() -> Step:
        step, found = run_sweep(plan, env, work, clock, out_dir, run_id)
        outcomes.extend(found)
        return step

    order: tuple[tuple[str, Callable[[], Step]], ...] = (
        ("timers", lambda: run_timers(plan, env, work, clock, out_dir)),
        ("sweep", sweep),
        ("profile", lambda: run_profile(plan, env, work, clock, out_dir, f"{run_id}-profile")),
        ("pytest", lambda: run_pytest(plan, env, work, clock, out_dir)),
    )
    steps = []
    for name, fn in order:
        print(f"[{clock.elapsed():5.0f} s] {name} ...", flush=True)
        step = fn()
        steps.append(step)
        print(f"[{clock.elapsed():5.0f} s] {name}: {step.status}; {step.detail}"[:400], flush=True)
    return steps, outcomes
