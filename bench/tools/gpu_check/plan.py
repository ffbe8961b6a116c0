"""What the check runs and how long each step may take: the GPU plan, the dry run's, and the run's deadline."""

from __future__ import annotations

import time
from dataclasses import dataclass

from data.errors import InputError

# Every CUDA recipe that can run on a machine without TensorRT or onnxruntime-gpu, most needed first: the compiled
# and torchao recipes have the least GPU evidence behind them (results/gpu), so a stopped run still checks them.
GPU_RECIPES = (
    "fp32",
    "compile(reduce-overhead,fp16)",
    "compile(fp16)",
    "torchao(int8-dynamic)",
    "fp32-cl",
    "fp16",
    "bf16",
)
# Recipes whose backend a bare GPU machine usually lacks, added at the end where the package is installed (the
# Docker image, a user's T4): then the same command verifies TensorRT and ONNX Runtime's CUDA/TensorRT providers
# (give it --minutes).
WHEN_INSTALLED = (("torch-tensorrt", ("trt(fp16)", "trt(int8)")), ("onnxruntime-gpu", ("ort",)))
# The dry run's: eager recipes that run on any CPU, plus fp16 for a skipped row (compiling would not fit its 2 minutes
# on a small CPU runner: the dry run rehearses the plumbing, the tests of each recipe are the suite's).
DRY_RECIPES = ("fp32", "fp32-cl", "fp16")


@dataclass(frozen=True)
class Plan:
    """What the check runs and the seconds each step may take; ``mode`` is ``gpu`` or ``dry`` (CPU rehearsal)."""

    mode: str
    device: str
    model: str
    img_size: int
    num_classes: int
    recipes: tuple[str, ...]
    timer_batches: tuple[int, ...]
    timer_min_calls: int
    rounds: int
    total_s: float
    timers_s: float
    profile_s: float
    pytest_min_s: float
    margin_s: float
    variant_timeout_s: float
    profile_batch: int
    profile_steps: int
    throughput_batch: int | None = None  # None: the sweep's default (128 on CUDA)
    quick: bool = True
    serve: bool = False
    serve_minutes: float | None = None  # the serving stage's cap (--serve-minutes); None: the sweep's default
    sweep_extra: tuple[str, ...] = ()

    @property
    def dry(self) -> bool:
        return self.mode == "dry"

    @property
    def run_id(self) -> str:
        """The sweep's run folder name (the profile's adds ``-profile``); logs.txt finds failed variants there."""
        return f"gpu-check-{self.mode}"


def make_plan(mode: str, minutes: float | None = None) -> Plan:
    """The budgets. GPU: 8 min = setup (~20 s) + timers 45 s + sweep (the rest) + profile 45 s + pytest >= 110 s.

    The sweep gets what the others leave: its recipes are ordered by need, each build or measurement is capped
    by ``--timeout`` so one slow compile cannot take the rest, and it is stopped at its deadline. ``--quick``
    budgets and 10 rounds keep an eager variant's measurement short, so most of the time goes to compiling.
    """
    if mode == "gpu":
        total = 60.0 * (minutes if minutes is not None else 8.0)
        return Plan(
            mode="gpu",
            device="cuda",
            model="resnet50",
            img_size=224,
            num_classes=1000,
            recipes=GPU_RECIPES,
            timer_batches=(1, 128),
            timer_min_calls=20,
            rounds=10,
            total_s=total,
            timers_s=45.0,
            profile_s=45.0,
            pytest_min_s=110.0,
            margin_s=15.0,
            variant_timeout_s=150.0,
            profile_batch=32,
            profile_steps=5,
            serve_minutes=1.5,
        )
    if mode == "dry":
        total = 60.0 * (minutes if minutes is not None else 3.0)
        return Plan(
            mode="dry",
            device="cpu",
            model="resnet10t",
            img_size=32,
            num_classes=10,
            recipes=DRY_RECIPES,
            timer_batches=(1, 8),
            timer_min_calls=5,
            rounds=5,
            total_s=total,
            timers_s=6.0,
            profile_s=30.0,
            pytest_min_s=30.0,
            margin_s=5.0,
            variant_timeout_s=60.0,
            profile_batch=8,
            profile_steps=2,
            throughput_batch=8,
            serve_minutes=0.2,  # the serving search would otherwise take most of the sweep's share
        )
    raise InputError(f"unknown plan {mode!r}")


class Clock:
    """The run's deadline: each step gets what is left after the budgets of the steps still to come."""

    def __init__(self, total_s: float) -> None:
        self.start = time.monotonic()
        self.total_s = total_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self, reserve_s: float = 0.0) -> float:
        return self.total_s - self.elapsed() - reserve_s
