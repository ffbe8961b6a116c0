"""torchao weight/activation quantization of Linear layers, compiled: the GPU path torchao is built for.

ConvNets keep their convolutions in floating point here (torchao targets Linear layers), so on a ResNet only
the classifier changes; ViT-style models gain most. torchao's quantized kernels pay off only once compiled, so the
step always compiles.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from data.errors import InputError, MissingDependencyError, missing
from optim.artifact import Artifact, BuildContext
from optim.registry import MODULE, RUNTIME, Arg, register_step

SCHEMES = ("int8-dynamic", "int8-weight", "fp8")


def _available(args: dict[str, Any], device: str) -> str | None:
    return missing("torchao", "pip install torchao")


def _config(scheme: str, device: str):
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
    )

    if scheme == "fp8":
        if device != "cuda" or torch.cuda.get_device_capability() < (8, 9):
            raise MissingDependencyError("torchao(fp8) needs an NVIDIA GPU with compute capability 8.9+ (Ada/Hopper)")
        return Float8DynamicActivationFloat8WeightConfig()
    return Int8DynamicActivationInt8WeightConfig() if scheme == "int8-dynamic" else Int8WeightOnlyConfig()


@register_step(
    "torchao",
    accepts=[MODULE],
    produces=RUNTIME,
    args=(Arg("scheme", default=SCHEMES[0], help="what is quantized", choices=SCHEMES, positional=True),),
    description="torchao quantize_ of Linear layers, then torch.compile (needs compile to be faster)",
    default_recipes={"cuda": ["torchao(int8-dynamic)"]},
    available=_available,
    search_candidate=True,
    compresses=lambda args, device: str(args.get("scheme", SCHEMES[0])).startswith("int8"),
)
def torchao_quantize(artifact: Artifact, ctx: BuildContext, scheme: str = SCHEMES[0]) -> Artifact:
    from torchao.quantization import quantize_

    module = artifact.module.to(ctx.device).eval()
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(f"torchao({scheme}): {ctx.loaded.info.arch} has no nn.Linear layer to quantize")
    if ctx.device == "cuda" and scheme != "fp8":
        module = module.to(torch.bfloat16)  # torchao's int8 CUDA kernels expect bf16 activations
        artifact.input_dtype = torch.bfloat16
    quantize_(module, _config(scheme, ctx.device))
    artifact.module = torch.compile(module)
    artifact.kind = RUNTIME
    artifact.steps.append(
        {
            "config": {"scheme": scheme},
            "quantized_linear_layers": len(linears),
            "note": "only nn.Linear layers are quantized; convolutions stay in floating point",
            "compiled": "torch.compile default mode; compile time lands in first_call_ms",
        }
    )
    return artifact
