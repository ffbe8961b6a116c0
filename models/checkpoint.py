"""Load and save classifier checkpoints safely, whatever trainer wrote them.

Users bring checkpoints from timm's train script, PyTorch Lightning (with Hydra configs), DDP, ``torch.compile``,
timm's own saved folders and plain ``torch.save(model.state_dict())``, for timm architectures or for their own
model classes. Everything is read as tensors and plain data: ``weights_only=True`` first, and where that refuses
only unknown classes, an unpickler that reads them as inert placeholders (:mod:`models.safe_pickle`). No code
from a checkpoint ever runs, and a checkpoint never chooses code to import.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.errors import CheckpointError
from models._formats import FORMAT_NAME, RawCheckpoint, fit_keys, load_safetensors, strip_wrappers, torch_load, unwrap
from models._instantiate import (
    apply_overrides,
    create_model,
    instantiate,
    mismatch_message,
    output_classes,
    plain_data_config,
    resolve_data_config,
    timm_model,
)
from models.info import LoadedModel, ModelInfo
from models.spec import LoadSpec

__all__ = ["LoadedModel", "ModelInfo", "create_model", "instantiate", "load", "resolve_data_config", "save"]

FORMAT_VERSION = 1


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read(path: Path) -> tuple[RawCheckpoint, Path]:
    """The weights and header of any supported layout; also returns the file that was hashed."""
    from models.hf_folder import is_timm_folder, read_timm_folder

    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        if is_timm_folder(path):
            return read_timm_folder(path)
        raise CheckpointError(f"{path} is a folder but not a timm model folder (config.json + model.safetensors)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    if path.suffix == ".safetensors":
        state_dict, header = load_safetensors(path)
        return RawCheckpoint(strip_wrappers(state_dict), header, "safetensors"), path
    obj, placeholders = torch_load(path)
    return unwrap(obj, path, placeholders), path


def _random_init(spec: LoadSpec) -> LoadedModel:
    from models.factory import build_from_factory, data_config_of

    if spec.factory:
        model = build_from_factory(spec.factory, spec.model_kwargs).eval()
        data_config = data_config_of(model)
    else:
        model = create_model(spec.model, spec.num_classes or 1000).eval()
        data_config = resolve_data_config(model)
    data_config = apply_overrides(data_config, spec)
    classes = spec.num_classes or (
        output_classes(model, data_config["input_size"], spec.factory) if spec.factory else model.num_classes
    )
    info = ModelInfo(
        arch=spec.model,
        num_classes=int(classes),
        data_config=data_config,
        source_format="random-init",
        factory=spec.factory,
        model_kwargs=dict(spec.model_kwargs),
    )
    return LoadedModel(model, info)


def load(
    source: LoadSpec | str | Path | None,
    arch: str | None = None,
    num_classes: int | None = None,
    img_size: int | None = None,
) -> LoadedModel:
    """Load a checkpoint (any supported layout) into its model, in eval mode.

    ``source`` is a :class:`~models.spec.LoadSpec` (what every command builds) or a path, with ``arch``,
    ``num_classes`` and ``img_size`` as a shorthand for the same fields. A path of None builds random weights
    for ``arch`` (speed-only studies: accuracy is meaningless then).
    """
    if isinstance(source, LoadSpec):
        spec = source
    else:
        path_text = str(source) if source is not None else None
        spec = LoadSpec(path=path_text, model=arch, num_classes=num_classes, img_size=img_size)
    spec = spec.validated()
    if spec.random_init:
        return _random_init(spec)
    path = Path(spec.path)
    raw, hashed = _read(path)
    return _build(raw, spec, path, hashed)


def _module_for(raw: RawCheckpoint, spec: LoadSpec, path: Path) -> tuple[nn.Module, dict, str, dict[str, Any]]:
    """(the module the weights belong to, the weights fitted to it, its name, the factory's kwargs)."""
    from models.factory import build_from_factory

    header = raw.header
    saved_factory = header.get("factory")
    if saved_factory and spec.model != saved_factory:
        # A checkpoint never chooses code to import: the user names the factory, and it must be this one.
        raise CheckpointError(f"{path} was built with the model factory {saved_factory}; pass --model {saved_factory}")
    if spec.factory:
        kwargs = dict(spec.model_kwargs)
        if saved_factory and not kwargs:
            kwargs = dict(header.get("model_kwargs") or {})  # data for the factory the user named
        model = build_from_factory(spec.factory, kwargs)
        return model, fit_keys(raw.state_dict, model.state_dict()), spec.factory, kwargs
    header_arch = header.get("arch")
    if spec.model and header_arch and spec.model != header_arch:
        raise CheckpointError(f"{path} was trained as {header_arch!r} but --model says {spec.model!r}; drop --model")
    arch = spec.model or header_arch
    if not arch:
        raise CheckpointError(
            f"{path} does not record its architecture; pass --model ARCH (a timm name, or pkg.module:fn for your "
            "own model class)"
        )
    model, state_dict = timm_model(arch, raw, spec, path)
    return model, state_dict, arch, {}


def _class_count(model: nn.Module, raw: RawCheckpoint, spec: LoadSpec, path: Path, input_size: list[int]) -> int:
    if not spec.factory:
        return int(getattr(model, "num_classes", None) or raw.header.get("num_classes"))
    classes = raw.header.get("num_classes") if raw.header.get("factory") else None
    classes = classes or output_classes(model, input_size, spec.factory)
    if spec.num_classes and spec.num_classes != classes:
        raise CheckpointError(f"{path} has {classes} classes but --num-classes says {spec.num_classes}")
    return int(classes)


def _build(raw: RawCheckpoint, spec: LoadSpec, path: Path, hashed: Path) -> LoadedModel:
    from models.factory import data_config_of

    header = raw.header
    model, state_dict, arch, kwargs = _module_for(raw, spec, path)
    pruned = header.get("pruned_layers")
    if pruned:
        from models.pruned import rebuild_pruned

        rebuild_pruned(model, pruned)
    problem = mismatch_message(model, state_dict, arch, path)
    if problem:
        raise CheckpointError(problem)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    data_config = plain_data_config(header.get("data_config") or {})
    if not data_config:
        data_config = data_config_of(model) if spec.factory else resolve_data_config(model)
    data_config = apply_overrides(data_config, spec)
    info = ModelInfo(
        arch=arch,
        num_classes=_class_count(model, raw, spec, path, data_config["input_size"]),
        data_config=data_config,
        class_names=tuple(header.get("class_names") or ()),
        data_spec=header.get("data_spec"),
        source=str(path),
        sha256=file_sha256(hashed),
        source_format=raw.fmt,
        metrics=dict(header.get("metrics") or {}),
        pruned_layers=pruned,
        factory=spec.factory,
        model_kwargs=kwargs,
        placeholders=tuple(raw.placeholders),
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
        "openvino",
        "nncf",
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
    """Write our checkpoint format: tensors and plain Python values only, so it loads with ``weights_only=True``.

    A model of the user's own class records its factory name, which loading checks against the one the user
    passes; it is never imported because a checkpoint says so.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arch": info.arch,
        "num_classes": info.num_classes,
        "class_names": list(info.class_names),
        "data_config": plain_data_config(info.data_config),
        "data_spec": info.data_spec,
        "metrics": dict(metrics if metrics is not None else info.metrics),
        "versions": library_versions(),
        "state_dict": state_dict,
    }
    if info.factory:
        payload["factory"] = info.factory
        payload["model_kwargs"] = json.loads(json.dumps(dict(info.model_kwargs), default=str))
    if info.pruned_layers:
        payload["pruned_layers"] = info.pruned_layers
    payload.update(extra or {})
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a truncated checkpoint behind
    return path
