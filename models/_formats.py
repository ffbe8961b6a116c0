"""Finding the weights and what the trainer recorded about them, whatever wrote the checkpoint.

timm's train script, PyTorch Lightning, DDP, ``torch.compile`` and a plain ``torch.save(model.state_dict())``
all nest and prefix the weights differently. :func:`unwrap` finds the state dict and a header (architecture,
class count, data config, ...); :func:`fit_keys` strips whatever prefix makes the keys match the model.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from data.errors import CheckpointError

FORMAT_NAME = "optbench-checkpoint"
# Keys under which trainers nest the weights, best first: EMA weights win when present (timm does the same).
NESTED_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "net", "module")
# Prefixes added by wrappers around the whole model: DDP/DataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Where trainers' configs say which architecture they trained, most specific first; only timm names count.
ARCH_KEYS = ("arch", "model_name", "architecture", "timm_model", "backbone", "model", "name", "net")
CLASS_KEYS = ("num_classes", "n_classes", "num_labels")
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


@dataclass
class RawCheckpoint:
    """What a checkpoint file holds, before any model is built."""

    state_dict: dict[str, torch.Tensor]
    header: dict[str, Any]
    fmt: str
    placeholders: list[str] = field(default_factory=list)


def _reason(exc: BaseException) -> str:
    """Why torch.load refused a file, in words: its messages can be a bare key or index ("101")."""
    text = _first_line(exc)
    if isinstance(exc, KeyError | IndexError) or len(text) < 8:
        return f"its contents do not parse as one: {type(exc).__name__} {text}".strip()
    return text


def torch_load(path: Path) -> tuple[Any, list[str]]:
    """``torch.load`` with ``weights_only=True``; when that refuses only unknown classes, the placeholder unpickler.

    Returns (object, dotted names read as inert placeholders).
    """
    try:
        with warnings.catch_warnings():  # torch warns about legacy (non-zip) files before refusing them: one line only
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True), []
    except pickle.UnpicklingError as exc:
        if not _GLOBAL_RE.search(str(exc)):
            raise CheckpointError(f"{path} is not a torch checkpoint (not a readable pickle of tensors)") from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(f"{path} is truncated or not a torch checkpoint ({_reason(exc)})") from None
    from models.safe_pickle import load_with_placeholders

    try:
        return load_with_placeholders(path)
    except Exception as exc:  # the restricted unpickler refused something, or the file is broken further on
        raise CheckpointError(
            f"{path} cannot be read without running code from it ({_first_line(exc)}); re-save the weights: "
            "torch.save(model.state_dict(), 'ckpt.pt')"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.``/``_orig_mod.`` wherever they wrap the model or a compiled submodule."""
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        cleaned[key.replace("._orig_mod.", ".")] = value
    return cleaned


def fit_keys(state_dict: Mapping[str, torch.Tensor], expected: Iterable[str]) -> dict[str, torch.Tensor]:
    """The state dict with the attribute prefix removed that makes most keys match ``expected``.

    A Lightning module holds the net as an attribute (``model.``, ``net.``, ``backbone_model.``), beside loss
    buffers and metrics that are dropped; with no prefix that matches better, the keys are kept as they are.
    """
    expected = set(expected)
    best, best_hits = dict(state_dict), len(expected & set(state_dict))
    prefixes = {k.split(".", 1)[0] + "." for k in state_dict if "." in k}
    for prefix in sorted(prefixes):
        candidate = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        hits = len(expected & set(candidate))
        if hits > best_hits:
            best, best_hits = candidate, hits
    return best


def _search(tree: Any, keys: tuple[str, ...], accept) -> Any:
    """Breadth-first through nested dicts and lists: the first value under one of ``keys`` that ``accept`` takes."""
    level = [tree]
    for _ in range(8):
        nxt = []
        for node in level:
            if isinstance(node, Mapping):
                for key in keys:
                    if key in node and accept(node[key]):
                        return node[key]
                nxt.extend(v for v in node.values() if isinstance(v, Mapping | list))
            elif isinstance(node, list):
                nxt.extend(v for v in node if isinstance(v, Mapping | list))
        if not nxt:
            break
        level = nxt
    return None


def _timm_name(value: Any) -> bool:
    if not isinstance(value, str) or not value or ":" in value or "/" in value:
        return False
    import timm

    return timm.is_model(value)


def hints_from_config(config: Any) -> dict[str, Any]:
    """Architecture and class count from a trainer's config (hyper-parameters, argparse args), if it names them."""
    hints: dict[str, Any] = {}
    arch = _search(config, ARCH_KEYS, _timm_name)
    if arch:
        hints["arch"] = arch
    classes = _search(config, CLASS_KEYS, lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0)
    if classes:
        hints["num_classes_hint"] = classes
    return hints


def unwrap(obj: Any, path: Path, placeholders: list[str]) -> RawCheckpoint:
    """Find the weights inside whatever the trainer saved, and what it recorded about them."""
    from models.safe_pickle import plain

    if isinstance(obj, Mapping) and obj.get("format") == FORMAT_NAME:
        if not is_state_dict(obj.get("state_dict")):
            raise CheckpointError(f"{path} is an optbench checkpoint without a state_dict; re-train or re-save it")
        header = {k: plain(v) for k, v in obj.items() if k != "state_dict"}
        return RawCheckpoint(dict(obj["state_dict"]), header, "optbench", placeholders)
    if is_state_dict(obj):
        return RawCheckpoint(strip_wrappers(obj), {}, "state_dict", placeholders)
    if isinstance(obj, Mapping):
        lightning = "hyper_parameters" in obj or "pytorch-lightning_version" in obj
        fmt = "lightning" if lightning else "nested"
        config = {k: plain(v) for k, v in obj.items() if not is_state_dict(v) and k not in ("optimizer_states",)}
        header = hints_from_config(config)
        for key in NESTED_KEYS:
            if is_state_dict(obj.get(key)):
                return RawCheckpoint(strip_wrappers(obj[key]), header, f"{fmt}:{key}", placeholders)
    kind = type(obj).__name__
    raise CheckpointError(
        f"{path} holds a {kind} without model weights; expected a state_dict or a dict with one of "
        f"{', '.join(NESTED_KEYS)}"
    )


def load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and our header (kept in the file's metadata) from a ``.safetensors`` file."""
    try:
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover - safetensors is a runtime dependency
        raise CheckpointError("reading .safetensors needs the safetensors package: pip install safetensors") from None
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable .safetensors file ({exc})") from None
    header: dict[str, Any] = {}
    if "optbench" in metadata:
        try:
            header = json.loads(metadata["optbench"])
        except json.JSONDecodeError:
            header = {}
    return tensors, header
