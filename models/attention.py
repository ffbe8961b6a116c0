"""Multi-head attention blocks laid out like timm's, and keeping their head width in step with their weights.

Such a block has a fused ``qkv`` Linear and reshapes its output to (3, num_heads, head_dim) in ``forward``, so the
integers it keeps (``head_dim``, ``attn_dim``) and its softmax ``scale`` must follow whenever pruning narrows
``qkv``: after the cut (:mod:`optim.backends.pruning`) and when a pruned checkpoint is rebuilt (:mod:`models.pruned`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The blocks with a fused ``qkv`` Linear and integer ``num_heads`` and ``head_dim`` (timm's ``Attention``)."""
    return [
        m
        for m in model.modules()
        if isinstance(getattr(m, "qkv", None), nn.Linear)
        and isinstance(m.__dict__.get("num_heads"), int)
        and isinstance(m.__dict__.get("head_dim"), int)
    ]


def set_head_dim(layer: nn.Module, head_dim: int) -> None:
    """Give ``layer`` the head width ``head_dim``, with the attention width and the softmax scale that go with it.

    The fused path (scaled_dot_product_attention) scales by the head width it is given; the explicit path reads
    ``scale``, so both must agree or the same weights would give two different models.
    """
    layer.head_dim = head_dim
    if isinstance(layer.__dict__.get("attn_dim"), int):
        layer.attn_dim = layer.num_heads * head_dim
    if isinstance(layer.__dict__.get("scale"), float):
        layer.scale = head_dim**-0.5


def sync_attention(layers: Sequence[nn.Module]) -> None:
    """Set each block's head width from its (pruned) ``qkv``: the pruner keeps the head count."""
    for layer in layers:
        set_head_dim(layer, layer.qkv.out_features // 3 // layer.num_heads)
