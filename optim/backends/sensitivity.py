"""Which layers hurt most when quantized: measured, one layer at a time, on calibration images.

For each Conv/Linear layer alone, simulate INT8 in eager PyTorch (weights: symmetric per-output-channel
int8; input activations: asymmetric uint8 with the range seen on the batch) and measure how far the
logits move from FP32 (1 - cosine, averaged over images). Backend-neutral and cheap (one forward pass per
layer), so it ranks layers for both the ORT and the x86 path; the backends then keep the worst ones in FP32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

WEIGHTED = (nn.Conv2d, nn.Linear, nn.Conv1d)


def _fake_quant_weight(weight: torch.Tensor) -> torch.Tensor:
    flat = weight.reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return (weight / scale.view(shape)).round().clamp(-128, 127) * scale.view(shape)


def _fake_quant_activation(x: torch.Tensor) -> torch.Tensor:
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    zero = round(-lo / scale)
    return ((x / scale).round() + zero).clamp(0, 255).sub(zero).mul(scale)


def weighted_layers(module: nn.Module) -> list[str]:
    """Names of the Conv/Linear modules, in definition order."""
    return [name for name, m in module.named_modules() if isinstance(m, WEIGHTED) and name]


def classifier_name(module: nn.Module) -> str | None:
    """The classifier module's name (timm's ``get_classifier``), else the last Linear layer."""
    get = getattr(module, "get_classifier", None)
    head = get() if callable(get) else None
    for name, m in module.named_modules():
        if head is not None and m is head and isinstance(m, WEIGHTED):
            return name
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def end_layers(module: nn.Module) -> list[str]:
    """The first weighted layer (stem) and the classifier: the two most commonly kept in FP32."""
    layers = weighted_layers(module)
    ends = [layers[0]] if layers else []
    head = classifier_name(module)
    if head and head not in ends:
        ends.append(head)
    return ends


@torch.no_grad()
def layer_sensitivity(module: nn.Module, batch: torch.Tensor) -> list[dict[str, Any]]:
    """Per-layer logit error when only that layer is INT8, worst first."""
    module = module.eval()
    reference = module(batch).float()
    results = []
    for name, layer in module.named_modules():
        if not name or not isinstance(layer, WEIGHTED):
            continue
        original = layer.weight.data.clone()
        layer.weight.data = _fake_quant_weight(original)
        handle = layer.register_forward_pre_hook(lambda _m, args: (_fake_quant_activation(args[0]), *args[1:]))
        try:
            out = module(batch).float()
        finally:
            handle.remove()
            layer.weight.data = original
        cosine = nn.functional.cosine_similarity(out, reference, dim=1).mean()
        agree = (out.argmax(1) == reference.argmax(1)).float().mean() * 100
        results.append({"layer": name, "score": float(1 - cosine), "agreement": float(agree)})
    results.sort(key=lambda r: r["score"], reverse=True)
    return results


def most_sensitive(ranking: Sequence[dict[str, Any]], count: int, exclude: Sequence[str] = ()) -> list[str]:
    return [r["layer"] for r in ranking if r["layer"] not in exclude][:count]
