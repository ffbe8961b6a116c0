"""summary.json (everything) and summary.md (what a person reads first), naming the device and the torch it ran.

A dry run says so in its title, so a file handed back from a machine without CUDA is never read as a GPU figure.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.tools.gpu_check.outcomes import num, outcome_table, sweep_device_vs_e2e
from bench.tools.gpu_check.outputs import OUTPUT_FILES, SUMMARY_JSON, SUMMARY_MD, TIMERS
from bench.tools.gpu_check.plan import Plan
from bench.tools.gpu_check.probe import NEEDED
from bench.tools.gpu_check.process import Step


def timers_section(out_dir: Path, dry: bool = False) -> list[str]:
    """timers.json as a table (both clocks, both pass kinds) and the reading of each configuration."""
    path = out_dir / TIMERS
    if not path.is_file():
        return ["timers.json was not written (see logs.txt)."]
    data = json.loads(path.read_text())
    if not data.get("configs"):
        return [f"timers.json holds no measurement ({data.get('error') or 'the step was stopped first'})."]
    lines = [
        f"Clock for 'events': {data.get('events_clock')}; {data.get('seconds_per_pass')} s per pass"
        + ("." if data.get("complete") else "; partial: the step was stopped before the last configuration."),
        "",
        "| variant | batch | one pass: e2e wall p50 | e2e events p50 | device events p50 | device launch p50 "
        f"| separate: WallTimer e2e p50 | {'stand-in timer' if dry else 'CudaEventTimer'} device p50 "
        "| in 50 ms slices: WallTimer e2e p50 | SM MHz per pass |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cfg in data.get("configs", []):
        one, sep = cfg["one_pass"], cfg["separate_passes"]
        clocks = "/".join(str(p.get("sm_clock_mhz_before") or "-") for p in sep.values())
        lines.append(
            f"| {cfg['variant']} | {cfg['batch']} | {one['end_to_end']['wall']['p50_ms']:.3f} "
            f"| {one['end_to_end']['events']['p50_ms']:.3f} | {one['device_only']['events']['p50_ms']:.3f} "
            f"| {one['device_only']['launch']['p50_ms']:.3f} | {sep['wall_end_to_end']['p50_ms']:.3f} "
            f"| {sep['events_device_only']['p50_ms']:.3f} "
            f"| {num((sep.get('wall_end_to_end_sliced') or {}).get('p50_ms'))} | {clocks} |"
        )
    lines.append("")
    for cfg in data.get("configs", []):
        lines.append(f"- **{cfg['variant']} b{cfg['batch']}**: " + "; ".join(cfg.get("reading", [])))
    return lines


def summary_data(
    plan: Plan,
    machine: dict[str, Any],
    wheels: list[dict[str, Any]],
    steps: list[Step],
    outcomes: list[dict[str, Any]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Everything summary.json holds: the machine, every package version, the plan, each step and recipe."""
    gpu = machine.get("gpu") or {}
    packages = machine.get("packages", {})
    return {
        "dry_run": plan.dry,
        "mode": plan.mode,
        "device": plan.device,
        "gpu": gpu.get("name"),
        "gpu_detail": gpu,
        "driver": machine.get("driver"),
        "driver_cuda": machine.get("driver_cuda"),
        "torch": machine.get("torch"),
        "torch_cuda": machine.get("torch_cuda"),
        "cudnn": machine.get("cudnn"),
        "python": machine.get("python"),
        "cpu": machine.get("cpu"),
        "cpu_count": machine.get("cpu_count"),
        "packages": packages,
        "missing_needed": [p for p in NEEDED if packages and not packages.get(p)],
        "wheels": wheels,
        "plan": asdict(plan),
        "steps": [asdict(s) for s in steps],
        "recipes": outcomes,
        **extra,
    }


def header_lines(plan: Plan, machine: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """The title (DRY RUN on CPU, or the GPU's name) and the machine, model and time in a few lines."""
    gpu = machine.get("gpu") or {}
    packages = machine.get("packages", {})
    title = (
        "# GPU check: DRY RUN on CPU (no CUDA device here; the plumbing only, no GPU figure)"
        if plan.dry
        else f"# GPU check on {gpu.get('name')}"
    )
    device = f", {gpu.get('name')} ({gpu.get('sm_count')} SMs, {gpu.get('memory_mib')} MiB)" if gpu else None
    lines = [
        title,
        "",
        f"- device: {plan.device}" + (device or " (dry run: no GPU)"),
        f"- driver {machine.get('driver') or '-'}, driver CUDA {machine.get('driver_cuda') or '-'}; "
        f"torch {machine.get('torch')} (CUDA {machine.get('torch_cuda') or '-'}, cuDNN {machine.get('cudnn') or '-'}), "
        f"timm {packages.get('timm')}, Python {machine.get('python')}",
        f"- CPU: {machine.get('cpu')}, {machine.get('cpu_count')} logical CPUs",
        f"- model: {plan.model} at {plan.img_size} px, random weights; sweep --quick, {plan.rounds} paired rounds",
        f"- total {summary.get('elapsed_s')} s of the {plan.total_s:.0f} s allowed",
    ]
    if summary["missing_needed"]:
        lines.append(f"- **missing packages the steps import**: {', '.join(summary['missing_needed'])}")
    return lines


def wheels_line(wheels: list[dict[str, Any]]) -> list[str]:
    """What became of the carried wheels: unpacked, the machine's own kept, or ignored and why."""
    if not wheels:
        return []
    used = [w for w in wheels if w.get("action") == "unpacked"]
    have = [w for w in wheels if w.get("action") == "not needed"]
    ignored = [w for w in wheels if w.get("action") == "ignored"]
    text = f"- carried wheels: {len(used)} unpacked ({', '.join(w['wheel'] for w in used) or 'none'})"
    if have:
        text += "; the machine's own kept: " + ", ".join(
            f"{w['why'].removeprefix('the machine has ')} (carried {w['version']})" for w in have
        )
    if ignored:
        text += "; ignored: " + ", ".join(f"{w['wheel']} ({w['why']})" for w in ignored)
    return [text]


def write_summary(
    out_dir: Path,
    plan: Plan,
    machine: dict[str, Any],
    wheels: list[dict[str, Any]],
    steps: list[Step],
    outcomes: list[dict[str, Any]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """summary.json (everything) and summary.md (what a person reads first), naming the device and torch."""
    summary = summary_data(plan, machine, wheels, steps, outcomes, extra)
    (out_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    lines = header_lines(plan, machine, summary) + wheels_line(wheels)
    lines += [f"- {note}" for note in extra.get("notes", [])]
    lines += ["", "## Steps", "", "| step | status | seconds | budget s | detail |", "|---|---|---|---|---|"]
    for s in steps:
        budget = s.budget_s or "-"
        lines.append(f"| {s.name} | {s.status} | {s.seconds} | {budget} | {s.detail.replace('|', '/')[:300]} |")
    lines += ["", "## Sweep (paired against fp32)", "", *outcome_table(outcomes), ""]
    lines += ["Device-only above end-to-end in the sweep's rows:", *sweep_device_vs_e2e(outcomes), ""]
    lines += [
        "## Device-only vs end-to-end, the same calls both ways (timers.json)",
        "",
        *timers_section(out_dir, plan.dry),
        "",
        f"Files: {', '.join(OUTPUT_FILES)}.",
    ]
    (out_dir / SUMMARY_MD).write_text("\n".join(lines) + "\n")
    return summary
