"""``dynamic``: INT8 weights for ``nn.Linear`` layers, activations quantized per batch at run time (no calibration).

Worth it for ViT and MLP heads; a ConvNet spends its time in convolutions and gains little, which its manifest says.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optim.artifact import Artifact, BuildContext
from optim.int8 import cpu_input, eager_module, graph_predict
from optim.registry import MODULE, RUNTIME, register_step
from optim.variant import Variant, register_loader


def apply_dynamic(module: nn.Module) -> nn.Module:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's quantize_dynamic is deprecated but still the fast eager path
        return torch.ao.quantization.quantize_dynamic(module.eval(), {nn.Linear}, dtype=torch.qint8)


def _fp32_save_hook(module: nn.Module, ctx: BuildContext):
    """No calibration: saving the FP32 weights and applying it again on load rebuilds the variant exactly."""
    from models.checkpoint import save
    from models.pruned import with_pruned_layers

    fp32 = copy.deepcopy(module)
    info = with_pruned_layers(ctx.loaded.info, fp32)

    def hook(directory: Path) -> dict[str, Any]:
        save(directory / "model.pt", fp32, info)
        return {"kind": "dynamic-int8", "checkpoint": "model.pt", "rebuild": "quantize_dynamic on load"}

    return hook


@register_step(
    "dynamic",
    accepts=[MODULE],
    produces=RUNTIME,
    devices=["cpu"],
    description="dynamic INT8 for nn.Linear only (ViT/MLP heads); ConvNets gain little",
    slow_hints=lambda args, device, flags: [
        "dynamic quantization converts only Linear layers and quantizes activations on every call; a ConvNet spends "
        "its time in convolutions"
    ],
    search_candidate=True,
    quantize_method=True,
    compresses=True,
)
def dynamic_step(artifact: Artifact, ctx: BuildContext) -> Artifact:
    module = eager_module(artifact, "dynamic")
    total = sum(p.numel() for p in module.parameters())
    linear = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))
    source = _fp32_save_hook(module, ctx)
    quantized = apply_dynamic(module)
    notes = {
        "quantizer": "torch.ao.quantization.quantize_dynamic (qint8, nn.Linear)",
        "linear_weight_share": round(linear / max(total, 1), 4),
        "note": (
            f"only nn.Linear layers are quantized ({100 * linear / max(total, 1):.1f}% of the weights here); "
            "ConvNets gain little: their time is in convolutions"
        ),
    }
    out = Artifact(kind=RUNTIME, module=quantized, steps=[*artifact.steps, notes], save_hook=source)
    out.predict, out.prepare_input = graph_predict(quantized), cpu_input
    return out


@register_loader("dynamic-int8")
def load_dynamic(directory: Path, manifest: dict[str, Any], device: str, base=None) -> Variant:
    from optim.variant import saved_checkpoint

    quantized = apply_dynamic(saved_checkpoint(directory, manifest, base).model)
    return Variant(manifest["name"], manifest["recipe"], device, graph_predict(quantized), manifest, cpu_input)
