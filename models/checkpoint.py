"""Load and save timm classifier checkpoints safely, whatever trainer wrote them.

Users bring checkpoints from timm's train script, PyTorch Lightning, DDP, ``torch.compile`` and plain
``torch.save(model.state_dict())``. All of them are read with ``weights_only=True``: a checkpoint that
needs arbitrary classes to unpickle is refused and its code never runs.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.errors import CheckpointError

FORMAT_NAME = "optbench-checkpoint"
FORMAT_VERSION = 1
# Keys under which trainers nest the weights, best first: EMA weights win when present (timm does the same).
_NESTED_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "net", "module")
# Prefixes added by wrappers: DDP/DataParallel, torch.compile, Lightning modules holding the net as an attribute.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_LIGHTNING_PREFIXES = ("model.", "net.", "backbone_model.")
_DATA_CONFIG_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")


@dataclass(frozen=True)
class ModelInfo:
    """What we know about a loaded model besides its weights; plain values only (goes into manifests)."""

    arch: str
    num_classes: int
    data_config: dict[str, Any]
    class_names: tuple[str, ...] = ()
    data_spec: str | None = None
    source: str | None = None
    sha256: str | None = None
    source_format: str = "optbench"
    metrics: dict[str, Any] = field(default_factory=dict)
    pruned_layers: dict[str, Any] | None = None

    @property
    def input_size(self) -> tuple[int, int, int]:
        c, h, w = self.data_config["input_size"]
        return int(c), int(h), int(w)

    @property
    def has_weights(self) -> bool:
        return self.source_format != "random-init"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d


@dataclass
class LoadedModel:
    """A timm module in eval mode plus its :class:`ModelInfo`."""

    model: nn.Module
    info: ModelInfo


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_arch(arch: str) -> None:
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('.')[0][:6]}*")[:6]
        hint = f" Similar timm names: {', '.join(close)}." if close else " See timm.list_models()."
        raise CheckpointError(f"unknown timm architecture {arch!r}.{hint}")


def _plain_data_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _DATA_CONFIG_KEYS:
        if key in cfg:
            value = cfg[key]
            out[key] = list(value) if isinstance(value, tuple | list) else value
    return out


def resolve_data_config(model: nn.Module, img_size: int | None = None) -> dict[str, Any]:
    """timm's data config for ``model`` (input size, mean/std, interpolation, crop), optionally resized."""
    from timm.data import resolve_data_config as timm_resolve

    args: dict[str, Any] = {}
    if img_size:
        args["input_size"] = (3, int(img_size), int(img_size))
    return _plain_data_config(timm_resolve(args, model=model))


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            raise CheckpointError(
                f"{path} needs the Python object {found.group(1)} to unpickle, which we refuse (weights_only=True) "
                "because unpickling can run code; re-save it as tensors: torch.save(model.state_dict(), 'ckpt.pt')"
            ) from None
        raise CheckpointError(f"{path} is not a torch checkpoint (not a readable pickle of tensors)") from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is truncated or not a torch checkpoint ({first})") from None


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
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


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``module.``, ``_orig_mod.``) and a Lightning attribute prefix shared by the weights."""
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        cleaned[key.replace("._orig_mod.", ".")] = value
    for prefix in _LIGHTNING_PREFIXES:
        with_prefix = [k for k in cleaned if k.startswith(prefix)]
        # Lightning modules keep the net under an attribute; other attributes (loss buffers, metrics) are dropped.
        if with_prefix and len(with_prefix) >= 0.5 * len(cleaned):
            return {k[len(prefix) :]: cleaned[k] for k in with_prefix}
    return cleaned


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """Find the weights inside whatever the trainer saved; returns (state_dict, header, format name)."""
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT_NAME:
        if not _is_state_dict(obj.get("state_dict")):
            raise CheckpointError(f"{path} is an optbench checkpoint without a state_dict; re-train or re-save it")
        return dict(obj["state_dict"]), dict(obj), "optbench"
    if _is_state_dict(obj):
        return _strip_prefixes(obj), {}, "state_dict"
    if isinstance(obj, Mapping):
        header: dict[str, Any] = {}
        hparams = obj.get("hyper_parameters") or obj.get("hparams")
        fmt = "lightning" if "hyper_parameters" in obj or "pytorch-lightning_version" in obj else "nested"
        if isinstance(hparams, Mapping):
            for key in ("arch", "model_name", "model", "architecture"):
                if isinstance(hparams.get(key), str):
                    header["arch"] = hparams[key]
                    break
            if isinstance(hparams.get("num_classes"), int):
                header["num_classes"] = hparams["num_classes"]
        for key in ("arch", "model_name"):
            if isinstance(obj.get(key), str) and "arch" not in header:
                header["arch"] = obj[key]
        for key in _NESTED_KEYS:
            if _is_state_dict(obj.get(key)):
                return _strip_prefixes(obj[key]), header, f"{fmt}:{key}"
    kind = type(obj).__name__
    raise CheckpointError(
        f"{path} holds a {kind} without model weights; expected a state_dict or a dict with one of "
        f"{', '.join(_NESTED_KEYS)}"
    )


def _classifier_key(arch: str) -> str | None:
    """Name of the classifier weight in timm's layout, from the model's pretrained config (no model built)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    classifier = model.pretrained_cfg.get("classifier")
    names = [classifier] if isinstance(classifier, str) else list(classifier or [])
    for name in names:
        if name and f"{name}.weight" in model.state_dict():
            return f"{name}.weight"
    return None


def _infer_num_classes(arch: str, state_dict: Mapping[str, torch.Tensor], path: Path) -> int:
    key = _classifier_key(arch)
    if key is None or key not in state_dict:
        raise CheckpointError(
            f"cannot infer the class count of {path}: no classifier weight {key!r} for {arch}; pass --num-classes"
        )
    return int(state_dict[key].shape[0])


def _mismatch_message(model: nn.Module, state_dict: Mapping[str, torch.Tensor], arch: str, path: Path) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} shape mismatches (checkpoint vs model): {'; '.join(wrong[:3])}")
    if missing:
        parts.append(f"{len(missing)} missing keys: {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {', '.join(unexpected[:3])}")
    return f"{path} does not fit {arch}: " + "; ".join(parts) + " (wrong --model or --num-classes?)"


def create_model(arch: str, num_classes: int) -> nn.Module:
    import timm

    _check_arch(arch)
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def load(
    path: str | Path | None,
    arch: str | None = None,
    num_classes: int | None = None,
    img_size: int | None = None,
) -> LoadedModel:
    """Load a checkpoint (any supported layout) into a timm model in eval mode.

    ``path=None`` builds a randomly initialised ``arch`` for speed-only studies (accuracy is meaningless then).
    ``img_size`` overrides the input resolution recorded in the checkpoint or the model's default.
    """
    if path is None:
        if not arch:
            raise CheckpointError("no checkpoint given: pass a checkpoint path or --model ARCH with --random-init")
        model = create_model(arch, num_classes or 1000).eval()
        info = ModelInfo(
            arch=arch,
            num_classes=num_classes or 1000,
            data_config=resolve_data_config(model, img_size),
            source=None,
            source_format="random-init",
        )
        return LoadedModel(model, info)

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a file: {path}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None

    if path.suffix == ".safetensors":
        state_dict, header = _load_safetensors(path)
        state_dict, fmt = _strip_prefixes(state_dict), "safetensors"
    else:
        state_dict, header, fmt = _unwrap(_torch_load(path), path)

    header_arch = header.get("arch")
    if arch and header_arch and arch != header_arch:
        raise CheckpointError(f"{path} was trained as {header_arch!r} but --model says {arch!r}; drop --model")
    arch = arch or header_arch
    if not arch:
        raise CheckpointError(f"{path} does not record its architecture; pass --model ARCH (a timm name)")
    _check_arch(arch)

    inferred = int(header["num_classes"]) if header.get("num_classes") else _infer_num_classes(arch, state_dict, path)
    if num_classes and num_classes != inferred:
        raise CheckpointError(
            f"{path} has {inferred} classes but --num-classes says {num_classes}; drop --num-classes or fix it"
        )
    model = create_model(arch, inferred)
    pruned = header.get("pruned_layers")
    if pruned:
        from models.pruned import rebuild_pruned

        rebuild_pruned(model, pruned)
    problem = _mismatch_message(model, state_dict, arch, path)
    if problem:
        raise CheckpointError(problem)
    model.load_state_dict(state_dict, strict=True)
    model.eval()

    data_config = _plain_data_config(header.get("data_config") or {}) or resolve_data_config(model)
    if img_size:
        data_config["input_size"] = [3, int(img_size), int(img_size)]
    info = ModelInfo(
        arch=arch,
        num_classes=inferred,
        data_config=data_config,
        class_names=tuple(header.get("class_names") or ()),
        data_spec=header.get("data_spec"),
        source=str(path),
        sha256=file_sha256(path),
        source_format=fmt,
        metrics=dict(header.get("metrics") or {}),
        pruned_layers=pruned,
    )
    return LoadedModel(model, info)


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for name in (
        "torch",
        "torchvision",
        "timm",
        "onnxruntime",
        "torchao",
        "torch-pruning",
        "tensorrt",
        "torch-tensorrt",
    ):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions


def save(
    path: str | Path,
    model: nn.Module,
    info: ModelInfo,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write our checkpoint format: tensors and plain Python values only, so it loads with ``weights_only=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arch": info.arch,
        "num_classes": info.num_classes,
        "class_names": list(info.class_names),
        "data_config": _plain_data_config(info.data_config),
        "data_spec": info.data_spec,
        "metrics": dict(metrics if metrics is not None else info.metrics),
        "versions": library_versions(),
        "state_dict": state_dict,
    }
    if info.pruned_layers:
        payload["pruned_layers"] = info.pruned_layers
    payload.update(extra or {})
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a truncated checkpoint behind
    return path
