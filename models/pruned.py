"""Pruned architectures saved as plain per-layer shapes, so a pruned checkpoint loads with ``weights_only=True``.

Structured pruning changes layer widths (a Conv2d with 64 output channels keeps 32, the BatchNorm after it
keeps 32 features, the next conv takes 32 inputs). Pickling the pruned ``nn.Module`` would make the checkpoint
executable code; instead we record, for every module whose shapes differ from a fresh timm model of the same
architecture, the integer attributes that changed (``in_channels``, ``out_channels``, ``groups``,
``num_features``, ``in_features``, ...) and the shapes of its own parameters and buffers. Loading creates the
fresh timm model, applies those records (:func:`rebuild_pruned`) and then loads the plain state dict.

The record is generic on purpose: it does not depend on the layer class, so timm subclasses (``BatchNormAct2d``,
``Conv2dSame``, ``LayerNorm2d``) and bare parameters (``cls_token``, layer-scale ``gamma``) round-trip too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from data.errors import CheckpointError
from models.attention import set_head_dim

# Module attributes that describe widths; anything else (stride, padding, eps) is never changed by pruning.
SHAPE_ATTRS = (
    "in_channels",
    "out_channels",
    "groups",
    "num_features",
    "in_features",
    "out_features",
    "normalized_shape",
    "num_channels",
    "num_groups",
    "embed_dim",
    "num_heads",
    "head_dim",
    "attn_dim",
    "head_hidden_size",
    "hidden_size",
    "dim",
)


def _plain(value: Any) -> Any:
    """Shape attributes as plain ints / lists of ints (tuples become lists in the checkpoint header)."""
    if isinstance(value, torch.Size | tuple | list):
        return [int(v) for v in value]
    return int(value)


def _is_shape_value(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, tuple | list | torch.Size) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def _own_tensors(module: nn.Module) -> dict[str, tuple[torch.Tensor, bool]]:
    """The module's direct parameters and buffers (not its children's): name -> (tensor, is_parameter)."""
    out: dict[str, tuple[torch.Tensor, bool]] = {}
    for name, param in module.named_parameters(recurse=False):
        out[name] = (param, True)
    for name, buf in module.named_buffers(recurse=False):
        if buf is not None:
            out[name] = (buf, False)
    return out


def describe_pruned(model: nn.Module, reference: nn.Module) -> dict[str, Any]:
    """Per-layer records of how ``model`` differs in shape from ``reference`` (same architecture, unpruned).

    Returns ``{module_name: {"type": class name, "attrs": {attr: value}, "tensors": {name: shape}}}`` holding
    only plain values; empty when nothing differs. ``reference`` may live on the meta device.
    """
    ref_modules = dict(reference.named_modules())
    layers: dict[str, Any] = {}
    for name, module in model.named_modules():
        ref = ref_modules.get(name)
        if ref is None:
            raise CheckpointError(
                f"pruned model has a layer {name!r} ({type(module).__name__}) that the architecture does not have; "
                "only width changes can be saved"
            )
        if type(ref) is not type(module):
            raise CheckpointError(
                f"layer {name!r} became {type(module).__name__} (was {type(ref).__name__}); "
                "only width changes can be saved"
            )
        attrs = {}
        for attr in SHAPE_ATTRS:
            if attr in module.__dict__ and attr in ref.__dict__:
                new, old = module.__dict__[attr], ref.__dict__[attr]
                if _is_shape_value(new) and _plain(new) != _plain(old):
                    attrs[attr] = _plain(new)
        ref_tensors = _own_tensors(ref)
        tensors = {}
        for tname, (tensor, _) in _own_tensors(module).items():
            if tname in ref_tensors and tuple(tensor.shape) != tuple(ref_tensors[tname][0].shape):
                tensors[tname] = [int(s) for s in tensor.shape]
        if attrs or tensors:
            layers[name] = {"type": type(module).__name__, "attrs": attrs, "tensors": tensors}
    return layers


def rebuild_pruned(model: nn.Module, pruned_layers: Mapping[str, Any]) -> nn.Module:
    """Resize the layers of a fresh ``model`` in place to the recorded pruned shapes (weights come next).

    Called by :func:`models.load` before ``load_state_dict`` when the checkpoint header has ``pruned_layers``.
    New tensors are uninitialised: every one of them is overwritten by the state dict, which must be strict.
    """
    if not isinstance(pruned_layers, Mapping):
        raise CheckpointError(
            f"pruned_layers must be a mapping of layer name to shapes, got {type(pruned_layers).__name__}"
        )
    modules = dict(model.named_modules())
    for name, record in pruned_layers.items():
        module = modules.get(name)
        if module is None:
            raise CheckpointError(
                f"pruned layer {name!r} does not exist in {type(model).__name__}; wrong architecture?"
            )
        if not isinstance(record, Mapping):
            raise CheckpointError(f"pruned layer {name!r}: expected a record with attrs/tensors, got {record!r}")
        expected_type = record.get("type")
        if expected_type and expected_type != type(module).__name__:
            raise CheckpointError(
                f"pruned layer {name!r} was a {expected_type} when saved but is a {type(module).__name__} in this "
                "timm version; load it with the timm version that pruned it"
            )
        for attr, value in (record.get("attrs") or {}).items():
            if attr not in SHAPE_ATTRS or attr not in module.__dict__:
                raise CheckpointError(f"pruned layer {name!r}: cannot set attribute {attr!r}")
            old = module.__dict__[attr]
            setattr(module, attr, tuple(value) if isinstance(old, tuple) else value)
        if "head_dim" in (record.get("attrs") or {}):
            set_head_dim(module, module.head_dim)  # the softmax scale follows the pruned head width
        own = _own_tensors(module)
        for tname, shape in (record.get("tensors") or {}).items():
            if tname not in own:
                raise CheckpointError(f"pruned layer {name!r} has no parameter or buffer {tname!r}")
            old, is_param = own[tname]
            fresh = torch.empty([int(s) for s in shape], dtype=old.dtype, device=old.device)
            if is_param:
                setattr(module, tname, nn.Parameter(fresh, requires_grad=old.requires_grad))
            else:
                module.register_buffer(tname, fresh, persistent=tname not in module._non_persistent_buffers_set)
    return model


def with_pruned_layers(info, model: nn.Module):
    """``info`` (a :class:`~models.checkpoint.ModelInfo`) with ``pruned_layers`` describing ``model``'s widths.

    Savers call this so a pruned module is saved with the shapes it really has, whatever step pruned it.
    """
    from models._instantiate import instantiate

    layers = describe_pruned(model, instantiate(info, "meta"))
    return dataclasses.replace(info, pruned_layers=layers or None)


def channel_summary(model: nn.Module) -> dict[str, int]:
    """Total conv output channels and linear output features: a quick "did anything get pruned" figure."""
    conv = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    linear = sum(m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    return {"conv_out_channels": int(conv), "linear_out_features": int(linear)}
