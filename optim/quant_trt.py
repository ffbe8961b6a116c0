"""TensorRT INT8 PTQ on NVIDIA GPUs: TensorRT Model Optimizer calibrates, Torch-TensorRT builds the engine.

``modelopt.torch.quantization.quantize(model, INT8_DEFAULT_CFG, forward_loop)`` inserts calibrated
quantize/dequantize nodes (per-tensor activations, per-channel weights); the model is exported under
``export_torch_mode()`` and compiled by ``torch_tensorrt.dynamo.compile`` with INT8 enabled (FP16 kept
as a fallback precision for layers TensorRT will not run in INT8). Everything is imported lazily: the
packages come with ``pip install .[gpu]`` or the image built from ``Dockerfile.cuda``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from models.errors import MissingDependencyError

INSTALL_HINT = "pip install .[gpu] (torch-tensorrt, nvidia-modelopt) or build Dockerfile.cuda"


def unavailable_reason(device: str) -> str | None:
    """Why TensorRT INT8 cannot run here, or None."""
    if device != "cuda":
        return f"TensorRT INT8 needs an NVIDIA GPU with TensorRT ({INSTALL_HINT}); on CPU use x86 or ort"
    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    import importlib.util

    for module, package in (("torch_tensorrt", "torch-tensorrt"), ("modelopt", "nvidia-modelopt")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed ({INSTALL_HINT})"
    return None


def ptq_tensorrt(
    module: nn.Module, example: torch.Tensor, calib_batches: Iterable[torch.Tensor], max_batch: int
) -> tuple[Any, dict[str, Any]]:
    """Calibrate with ModelOpt and compile with Torch-TensorRT; returns (compiled module, notes)."""
    reason = unavailable_reason("cuda")
    if reason:
        raise MissingDependencyError(f"ptq(tensorrt): {reason}")
    import modelopt.torch.quantization as mtq
    import torch_tensorrt
    from modelopt.torch.quantization.utils import export_torch_mode

    start = time.perf_counter()
    model = module.eval().cuda()
    batches = [b.cuda() for b in calib_batches]

    def forward_loop(m: nn.Module) -> None:
        with torch.no_grad():
            for batch in batches:
                m(batch)

    mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop=forward_loop)
    calibrated_s = time.perf_counter() - start
    c, h, w = example.shape[1:]
    spec = torch_tensorrt.Input(
        min_shape=(1, c, h, w), opt_shape=(1, c, h, w), max_shape=(max(2, max_batch), c, h, w), dtype=torch.float32
    )
    with torch.no_grad(), export_torch_mode():
        program = torch.export.export(model, (example.cuda(),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        compiled = torch_tensorrt.dynamo.compile(
            program,
            inputs=[spec],
            enabled_precisions={torch.int8, torch.float16},
            min_block_size=1,
        )
    import importlib.metadata as md

    return compiled, {
        "quantizer": "TensorRT Model Optimizer INT8_DEFAULT_CFG",
        "calibration": {"method": "max (ModelOpt default)", "images": int(sum(b.shape[0] for b in batches))},
        "calibrate_s": round(calibrated_s, 3),
        "engine_build_s": round(time.perf_counter() - start - calibrated_s, 3),
        "gpu": torch.cuda.get_device_name(),
        "tensorrt": md.version("tensorrt") if _installed("tensorrt") else None,
        "torch_tensorrt": md.version("torch-tensorrt"),
        "max_batch": max(2, max_batch),
    }


def _installed(name: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False
