"""The profile step: ``python -m bench.profile --target infer`` with the torch profiler, its trace summarized.

The trace itself (tens of MiB) stays in the scratch folder; profile.txt holds what a person reads of it: event
counts, the number of CUDA kernels (none on a GPU means the profile did not see the device) and the top kernels.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

from bench.tools.gpu_check.outputs import PROFILE_TXT
from bench.tools.gpu_check.plan import Clock, Plan
from bench.tools.gpu_check.process import Step, run_step


def profile_command(plan: Plan, results: Path, run_id: str) -> list[str]:
    return [
        sys.executable, "-m", "bench.profile", "--random-init", "--model", plan.model,
        "--num-classes", str(plan.num_classes), "--img-size", str(plan.img_size), "--device", plan.device,
        "--target", "infer", "--profiler", "torch", "--steps", str(plan.profile_steps),
        "--batch-size", str(plan.profile_batch), "--no-fixes", "--run-id", run_id, "--results", str(results),
    ]  # fmt: skip


def _trace_events(trace: Path) -> list[dict[str, Any]]:
    raw = gzip.decompress(trace.read_bytes()) if trace.suffix == ".gz" else trace.read_text()
    return json.loads(raw).get("traceEvents", [])


def summarize_trace(profile_dir: Path) -> tuple[list[str], int]:
    """Event counts and the top kernels of the profiler trace; returns the lines and the number of CUDA kernel
    events."""
    traces = sorted(profile_dir.glob("torch/infer/*.pt.trace.json*"))
    if not traces:
        return ["no trace file was written"], 0
    trace = traces[0]
    try:
        events = _trace_events(trace)
    except (OSError, ValueError) as exc:
        return [f"trace {trace.name} unreadable: {exc}"], 0
    cats: dict[str, int] = {}
    kernels: dict[str, list[float]] = {}
    for event in events:
        cat = str(event.get("cat", ""))
        cats[cat] = cats.get(cat, 0) + 1
        if cat == "kernel":
            kernels.setdefault(str(event.get("name", "?")), []).append(float(event.get("dur", 0.0)))
    lines = [
        f"trace: {trace.name}, {trace.stat().st_size / 2**20:.1f} MiB, {len(events)} events",
        "events by category: " + ", ".join(f"{k or '-'} {v}" for k, v in sorted(cats.items(), key=lambda kv: -kv[1])),
        f"CUDA kernel events: {sum(len(v) for v in kernels.values())} ({len(kernels)} distinct kernels)",
    ]
    if kernels:
        total = sum(sum(v) for v in kernels.values())
        lines.append(f"kernel time in the trace: {total / 1e3:.2f} ms; top kernels by total time:")
        for name, durs in sorted(kernels.items(), key=lambda kv: -sum(kv[1]))[:10]:
            lines.append(f"  {sum(durs) / 1e3:9.3f} ms  {len(durs):5d} calls  {name[:110]}")
    return lines, sum(len(v) for v in kernels.values())


def run_profile(plan: Plan, env: dict[str, str], work: Path, clock: Clock, out_dir: Path, run_id: str) -> Step:
    step = Step("profile")
    command = profile_command(plan, work / "results", run_id)
    budget = min(plan.profile_s, clock.left(plan.pytest_min_s + plan.margin_s))
    run_step(step, command, env, work / "logs" / "profile.log", budget)
    profile_dir = work / "results" / "runs" / run_id / "profile"
    trace_lines, kernel_count = summarize_trace(profile_dir)
    if step.status == "ok" and plan.device == "cuda" and kernel_count == 0:
        step.status, step.detail = "failed", "the trace holds no CUDA kernel"
    lines = [
        f"# python -m bench.profile --target infer ({'DRY RUN on CPU' if plan.dry else plan.device})",
        "command: " + " ".join(command[1:]),
        f"status: {step.status}; exit code {step.returncode}; {step.seconds} s of {step.budget_s} s {step.detail}",
        "",
        *trace_lines,
        "",
    ]
    for name in ("verdict.txt", "infer.torch.txt"):
        path = profile_dir / name
        if path.is_file():
            lines += [f"## {name}", path.read_text(errors="replace")[:20000], ""]
    step.detail = "; ".join(x for x in (step.detail, f"{kernel_count} CUDA kernel events in the trace") if x)
    (out_dir / PROFILE_TXT).write_text("\n".join(lines) + "\n")
    return step
