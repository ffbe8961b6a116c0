"""torch.compile with Inductor, set up for measurement: freezing on CPU, an Inductor cache of the variant's own,
and the global Inductor config restored after every call.

On CPU, Inductor *freezing* (weights folded into the graph as constants, convolution weights pre-packed for oneDNN)
is what makes compile pay off: without it the weights stay graph inputs that oneDNN cannot pre-pack, and plain
``torch.compile`` is barely faster than eager at batch 1. It is set with ``torch._inductor.config.patch`` around
every call, not ``torch.compile(options=...)``, because the options route fails on PT2E-quantized graphs, and the
patch restores Inductor's global config after.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data.errors import InputError
from optim.variant import module_runtime

MODES = ("default", "max-autotune", "reduce-overhead")


@dataclass(frozen=True)
class CompileConfig:
    """How to compile; ``freezing=None`` means the device's default (on for CPU, off for CUDA)."""

    mode: str = "default"
    freezing: bool | None = None
    bf16: bool = False
    fp16: bool = False
    # max-autotune also benchmarks Triton convolution templates against cuDNN, which takes minutes per batch size on
    # a convnet. ``cudnn-convs`` keeps convolutions on ATen (cuDNN/oneDNN) and tunes the rest.
    cudnn_convs: bool = False

    def autocast(self) -> torch.dtype | None:
        """The autocast dtype this config asks for (None: keep what the step before chose)."""
        if self.bf16:
            return torch.bfloat16
        return torch.float16 if self.fp16 else None

    def resolved_freezing(self, device: str) -> bool:
        return (device == "cpu") if self.freezing is None else self.freezing

    def validate(self) -> CompileConfig:
        if self.mode not in MODES:
            raise InputError(f"unknown compile mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if self.bf16 and self.fp16:
            raise InputError("bf16 and fp16 are both autocast dtypes: choose one")
        return self


def shared_cache_dir() -> Path:
    """Inductor's cache for every run on this machine (under optbench's cache folder, not ``/tmp``).

    Shared rather than per run so that a sweep run again finds the C++ kernels the last one compiled: on the
    embedded default (Zen 4 VM) ``compile`` then builds in 6-8 s instead of 22 s. With freezing on, Inductor
    bypasses its FX graph cache (the weights become constants of the graph), so the graph is still lowered every
    time; what is reused is the compiled kernel code, whose keys are the generated source. The manifest records
    the lookups
    (:func:`cache_counts`), so a build time read from a warm cache says so.
    """
    from data.paths import cache_dir

    return cache_dir() / "inductor"


@contextlib.contextmanager
def cache_counts() -> Iterator[dict[str, int]]:
    """Inductor's FX graph cache hits, misses and bypasses during the block (filled in when it ends)."""
    from torch._dynamo.utils import counters

    keys = ("fxgraph_cache_hit", "fxgraph_cache_miss", "fxgraph_cache_bypass")
    before = {k: counters["inductor"][k] for k in keys}
    out: dict[str, int] = {}
    try:
        yield out
    finally:
        out.update({k.removeprefix("fxgraph_cache_"): counters["inductor"][k] - before[k] for k in keys})


@contextlib.contextmanager
def inductor_settings(cache_dir: Path, freezing: bool, cudnn_convs: bool = False) -> Iterator[None]:
    """Inductor's cache dir, freezing and conv backends for the duration of a call; global state is restored."""
    import torch._inductor.config as inductor_config

    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
    try:
        patch: dict[str, Any] = {"freezing": freezing}
        if cudnn_convs:
            patch["max_autotune_conv_backends"] = "ATEN"
        with inductor_config.patch(patch):
            yield
    finally:
        if previous is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous


def compile_runtime(
    target: torch.nn.Module | Callable[..., Any],
    device: str,
    cfg: CompileConfig,
    cache_dir: Path,
    memory_format: torch.memory_format | None = None,
    autocast_dtype: torch.dtype | None = None,
    input_dtype: torch.dtype | None = None,
) -> tuple[Callable[[Any], torch.Tensor], Callable[[torch.Tensor], Any], Any]:
    """(predict, prepare_input, compiled) for a module; compilation itself happens at the first ``predict``."""
    # Another compile in this process (tests, notebooks) could silently reuse a graph compiled with other
    # Inductor settings; the sweep runs one variant per process, so this reset only matters outside it.
    torch._dynamo.reset()
    cache_dir.mkdir(parents=True, exist_ok=True)
    freezing = cfg.resolved_freezing(device)
    if isinstance(target, torch.nn.Module):
        target.eval()
    # dynamic=False: each batch size gets its own static graph (recompiled once in warm-up). Left automatic,
    # the second batch size would turn the batch dimension symbolic, and max-autotune tunes kernels and CUDA
    # graphs for concrete shapes; deployments serve fixed batch sizes anyway.
    compiled = torch.compile(target, mode=None if cfg.mode == "default" else cfg.mode, dynamic=False)
    dtype = cfg.autocast() or autocast_dtype
    if isinstance(target, torch.nn.Module):
        inner, prepare = module_runtime(compiled, device, memory_format, dtype, input_dtype)
    else:  # a loaded runtime's predict function (e.g. a saved graph variant): it prepares its own inputs

        def inner(x):
            with torch.inference_mode():
                return compiled(x)

        def prepare(x):
            return x

    def predict(x: Any) -> torch.Tensor:
        with inductor_settings(cache_dir, freezing, cfg.cudnn_convs):
            return inner(x)

    return predict, prepare, compiled


def first_call_seconds(predict, prepare, example: torch.Tensor, device: str) -> float:
    start = time.perf_counter()
    predict(prepare(example))
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start
