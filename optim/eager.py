"""Eager PyTorch variants: the FP32 reference, channels_last, and reduced-precision autocast.

``fp32`` is the baseline every speedup and top-1 drop is computed against, so it is always built first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.checkpoint import ModelInfo
from models.machine import BF16_FLAGS
from optim.artifact import Artifact, BuildContext
from optim.registry import MODULE, REFERENCE, register_step
from optim.variant import Variant, module_runtime, register_loader

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FP16_CPU_HINT = "FP16 has no fast CPU kernels in PyTorch: it is a GPU format"


def bf16_hints(device: str, flags: set[str]) -> list[str]:
    """Why a BF16 variant may be slow: on a CPU without native BF16 every op converts."""
    if device == "cpu" and not flags & set(BF16_FLAGS):
        return [
            "this CPU has no native BF16 (no avx512_bf16/AMX): BF16 convolutions and matmuls are emulated, which is "
            "slower than FP32"
        ]
    return []


def _cuda_only(args: dict[str, Any], device: str) -> str | None:
    return None if device == "cuda" else "needs a CUDA device"


def eager_save_hook(artifact: Artifact, info: ModelInfo):
    """A save hook writing the module as our checkpoint (weights only) plus how to call it."""
    from models.checkpoint import save

    def hook(directory: Path) -> dict[str, Any]:
        from models.pruned import with_pruned_layers

        # A step before this one may have pruned the module (prune(0.5)+fp32-cl): save the widths it really has.
        save(directory / "model.pt", artifact.module, with_pruned_layers(info, artifact.module))
        return {
            "kind": "eager",
            "checkpoint": "model.pt",
            "channels_last": artifact.memory_format is torch.channels_last,
            "autocast": next((k for k, v in _DTYPES.items() if v == artifact.autocast_dtype), None),
            "half": artifact.input_dtype is torch.float16,
        }

    return hook


def _mark(artifact: Artifact, ctx: BuildContext, **changes: Any) -> Artifact:
    for key, value in changes.items():
        setattr(artifact, key, value)
    artifact.save_hook = eager_save_hook(artifact, ctx.loaded.info)
    return artifact


@register_step(
    REFERENCE,
    accepts=[MODULE],
    produces=MODULE,
    description="eager FP32 under inference_mode: the reference for speedups and top-1 drops",
    default_recipes={"cpu": [REFERENCE], "cuda": [REFERENCE]},
)
def fp32(artifact: Artifact, ctx: BuildContext) -> Artifact:
    return _mark(artifact, ctx)


@register_step(
    "fp32-cl",
    accepts=[MODULE],
    produces=MODULE,
    description="eager FP32 with channels_last weights and inputs (faster convolutions on oneDNN and cuDNN)",
    default_recipes={"cpu": ["fp32-cl"], "cuda": ["fp32-cl"]},
)
def fp32_channels_last(artifact: Artifact, ctx: BuildContext) -> Artifact:
    return _mark(artifact, ctx, memory_format=torch.channels_last)


@register_step(
    "bf16",
    accepts=[MODULE],
    produces=MODULE,
    description="eager autocast to bfloat16 (fast on CPUs with avx512_bf16/AMX and on Ampere+ GPUs)",
    default_recipes={"cpu": ["bf16"], "cuda": ["bf16"]},
    needs=lambda args, device: ("native_bf16",) if device == "cpu" else (),
    slow_hints=lambda args, device, flags: bf16_hints(device, flags),
    search_candidate=True,
    compresses=lambda args, device: device == "cuda",  # tensor cores; on a CPU it depends on the CPU
)
def bf16(artifact: Artifact, ctx: BuildContext) -> Artifact:
    return _mark(artifact, ctx, autocast_dtype=torch.bfloat16)


@register_step(
    "fp16",
    accepts=[MODULE],
    produces=MODULE,
    devices=["cuda"],
    description="eager autocast to float16 on CUDA",
    slow_hints=lambda args, device, flags: [FP16_CPU_HINT] if device == "cpu" else [],
    default_recipes={"cuda": ["fp16"]},
    available=_cuda_only,
    compresses=True,
)
def fp16(artifact: Artifact, ctx: BuildContext) -> Artifact:
    return _mark(artifact, ctx, autocast_dtype=torch.float16)


@register_step(
    "half",
    accepts=[MODULE],
    produces=MODULE,
    devices=["cuda"],
    description="weights and inputs cast to float16 with .half() (no autocast) on CUDA",
    slow_hints=lambda args, device, flags: [FP16_CPU_HINT] if device == "cpu" else [],
    default_recipes={"cuda": ["half"]},
    available=_cuda_only,
    compresses=True,
)
def half(artifact: Artifact, ctx: BuildContext) -> Artifact:
    artifact.module = artifact.module.half()
    return _mark(artifact, ctx, input_dtype=torch.float16)


@register_loader("eager")
def load_eager(directory: Path, manifest: dict[str, Any], device: str, base=None) -> Variant:
    from optim.variant import saved_checkpoint

    spec = manifest["load"]
    loaded = saved_checkpoint(directory, manifest, base)
    module = loaded.model.half() if spec.get("half") else loaded.model
    predict, prepare = module_runtime(
        module,
        device,
        memory_format=torch.channels_last if spec.get("channels_last") else None,
        autocast_dtype=_DTYPES.get(spec.get("autocast") or ""),
        input_dtype=torch.float16 if spec.get("half") else None,
    )
    return Variant(manifest["name"], manifest["recipe"], device, predict, manifest, prepare)
