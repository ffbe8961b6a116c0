"""The PyTorch profiler over a workload: Chrome traces for TensorBoard / Perfetto and a top-operators table.

Traces go to ``<run>/profile/torch/<target>/`` through ``tensorboard_trace_handler``, so ``tensorboard
--logdir results/runs`` (with the torch-tb-profiler plugin) lists them next to the sweep scalars, and
https://ui.perfetto.dev opens each ``*.pt.trace.json`` directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

from bench.profile.workloads import Workload
from data.errors import InputError


@dataclass(frozen=True)
class TorchSchedule:
    """``torch.profiler.schedule``: skip ``wait`` steps, warm up ``warmup``, record ``active``; ``repeat`` cycles."""

    wait: int = 1
    warmup: int = 1
    active: int = 3
    repeat: int = 1

    @property
    def total_steps(self) -> int:
        return (self.wait + self.warmup + self.active) * self.repeat

    @staticmethod
    def parse(text: str) -> TorchSchedule:
        """``"1,1,3,1"`` -> wait=1, warmup=1, active=3, repeat=1."""
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4:
            raise InputError(f"--torch-schedule {text!r}: give four integers WAIT,WARMUP,ACTIVE,REPEAT, e.g. 1,1,5,1")
        wait, warmup, active, repeat = values
        if wait < 0 or warmup < 0 or active <= 0 or repeat <= 0:
            raise InputError(
                f"--torch-schedule {text!r}: WAIT and WARMUP must be >= 0, ACTIVE and REPEAT > 0 (repeat 0, "
                "'forever', would never end)"
            )
        return TorchSchedule(wait, warmup, active, repeat)


@dataclass(frozen=True)
class TorchProfileResult:
    trace_dir: Path
    traces: tuple[Path, ...]
    table_path: Path
    table: str
    stacks_path: Path | None = None


def _tables(prof: profile, on_cuda: bool, top: int) -> str:
    averages = prof.key_averages()
    parts = [f"top {top} operators by self CPU time:\n" + averages.table(sort_by="self_cpu_time_total", row_limit=top)]
    if on_cuda:
        parts.append(
            f"top {top} operators by self CUDA time:\n" + averages.table(sort_by="self_cuda_time_total", row_limit=top)
        )
    return "\n".join(parts)


def run_torch_profiler(
    workload: Workload, sched: TorchSchedule, out_dir: Path, with_stack: bool = False, top: int = 15
) -> TorchProfileResult:
    """Profile ``sched.total_steps`` steps; a trace per active cycle in ``<out_dir>/torch/<target>/``.

    ``record_shapes`` and ``profile_memory`` are on (input shapes and allocations show in the trace);
    ``with_stack`` adds Python stacks (bigger traces, and ``<target>.stacks.txt`` for flame graphs).
    """
    trace_dir = out_dir / "torch" / workload.name
    trace_dir.mkdir(parents=True, exist_ok=True)
    on_cuda = torch.device(workload.device).type == "cuda"
    if not torch.cuda.is_available():  # a CUDA build of torch on a CPU-only machine: Kineto's GPU probe logs an error
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # that is not one (read when the profiler starts; yours wins)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    handler = tensorboard_trace_handler(str(trace_dir), worker_name=workload.name)
    tables: list[str] = []

    def on_trace_ready(prof: profile) -> None:
        handler(prof)
        tables.append(_tables(prof, on_cuda, top))

    with profile(
        activities=activities,
        schedule=schedule(wait=sched.wait, warmup=sched.warmup, active=sched.active, repeat=sched.repeat),
        on_trace_ready=on_trace_ready,
        record_shapes=True,
        profile_memory=True,
        with_stack=with_stack,
        # verbose keeps the Python stacks that export_stacks writes (without it the stacks file is empty)
        experimental_config=torch._C._profiler._ExperimentalConfig(verbose=True) if with_stack else None,
    ) as prof:
        try:
            for _ in range(sched.total_steps):
                workload.step()
                prof.step()
        finally:
            workload.close()
    stacks_path = None
    if with_stack:
        stacks_path = out_dir / f"{workload.name}.stacks.txt"
        prof.export_stacks(str(stacks_path), "self_cuda_time_total" if on_cuda else "self_cpu_time_total")
    traces = tuple(sorted(trace_dir.glob("*.pt.trace.json*")))
    header = (
        f"torch.profiler of {workload.name}: schedule wait={sched.wait} warmup={sched.warmup} "
        f"active={sched.active} repeat={sched.repeat}; the table is of the last active cycle"
    )
    table = header + "\n" + (tables[-1] if tables else "(no active cycle completed)")
    table_path = out_dir / f"{workload.name}.torch.txt"
    table_path.write_text(table + "\n")
    return TorchProfileResult(trace_dir, traces, table_path, table, stacks_path)
