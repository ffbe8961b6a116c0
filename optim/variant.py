"""A :class:`Variant` is what every producer returns and every measurement takes.

``predict(prepared_batch) -> logits`` is the timed call; ``prepare_input(host_batch)`` moves a CPU batch
to the device, dtype and memory format the variant wants (timed separately on GPUs, so device-only and
end-to-end figures can both be reported). ``save(dir)`` / ``load(dir)`` let a variant built once be
benchmarked many times.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.errors import InputError
from models.checkpoint import LoadedModel, library_versions
from models.spec import LoadSpec
from optim.artifact import Artifact, BuildContext
from optim.recipe import Recipe, parse
from optim.registry import GRAPH, MODULE, RUNTIME

MANIFEST = "manifest.json"
# Loaders for saved variants, by the "load" kind a step's save_hook wrote: producers register theirs.
# A loader is called as loader(directory, manifest, device, base): ``base`` is the LoadSpec of the run that
# loads it (its model factory, for a variant of the user's own model class), or None.
LOADERS: dict[str, Callable[..., Variant]] = {}
# Turns a terminal artifact of a kind into a runtime (e.g. ONNX file -> ORT session); the onnx producer adds its own.
FINALIZERS: dict[str, Callable[[Artifact, BuildContext], Artifact]] = {}
# Loaders that compile again (torch.compile, Inductor): loading them costs about as much as building did.
COMPILING_LOADERS: set[str] = set()
# Loaders that need nothing but the directory (an ONNX, OpenVINO, exported program or engine file): a process that
# only loads such a variant never reads the source checkpoint or builds the timm model.
STANDALONE_LOADERS: set[str] = set()


def register_loader(kind: str, compiles: bool = False, standalone: bool = False) -> Callable:
    """Register the loader of a saved kind; ``compiles`` says loading it runs a compiler again (it is slow);
    ``standalone`` that it reads only the saved files, never the source model."""

    def decorator(fn: Callable[[Path, dict[str, Any], str], Variant]) -> Callable:
        LOADERS[kind] = fn
        if compiles:
            COMPILING_LOADERS.add(kind)
        if standalone:
            STANDALONE_LOADERS.add(kind)
        return fn

    return decorator


def standalone_source(directory: str | Path) -> LoadedModel | None:
    """What a loading process needs to know of the source model (input size, data config, checkpoint digest),
    from the manifest alone, for a variant whose loader reads only its own files; None for any other variant
    (or an unreadable manifest: :meth:`Variant.load` then says what is wrong with it)."""
    from models.info import ModelInfo
    from optim.registry import load_producers

    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text())
        source, load = manifest["source"], manifest["load"]
        load_producers()
        if load.get("kind") not in STANDALONE_LOADERS:
            return None
        info = ModelInfo(
            arch=source["arch"],
            num_classes=int(source["num_classes"]),
            data_config=dict(manifest["data_config"]),
            data_spec=source.get("data_spec"),
            source=source.get("checkpoint"),
            sha256=source.get("sha256"),
            source_format=source.get("format") or "optbench",
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return LoadedModel(model=None, info=info)


def saved_checkpoint(directory: Path, manifest: dict[str, Any], base: LoadSpec | None) -> LoadedModel:
    """The checkpoint a variant directory keeps (our format: tensors only), checked against its recorded sha256.

    A model of the user's own class is rebuilt with ``base``'s factory; the directory cannot name one.
    """
    import models
    from optim.safe_artifacts import artifact_file, check_recorded_digest

    path = artifact_file(directory, manifest["load"].get("checkpoint"), "checkpoint")
    check_recorded_digest(directory, manifest, path)
    factory = base.factory if base is not None else None
    kwargs = dict(base.model_kwargs) if factory and base is not None else {}
    return models.load(LoadSpec(path=str(path), model=factory, model_kwargs=kwargs))


def loading_compiles(manifest: dict[str, Any]) -> bool:
    """Whether loading this saved variant compiles again, so a second copy is about as slow to start as the first."""
    from optim.registry import load_producers

    load_producers()
    return (manifest.get("load") or {}).get("kind") in COMPILING_LOADERS


def identity(x: Any) -> Any:
    return x


@dataclass
class Variant:
    name: str
    recipe: str
    device: str
    predict: Callable[[Any], torch.Tensor]
    manifest: dict[str, Any]
    prepare_input: Callable[[torch.Tensor], Any] = identity
    artifact: Artifact | None = field(default=None, repr=False)

    def __call__(self, host_batch: torch.Tensor) -> torch.Tensor:
        """End-to-end: host tensor in, logits (on CPU, float32) out."""
        return self.predict(self.prepare_input(host_batch)).float().cpu()

    def save(self, directory: str | Path) -> Path:
        """Write ``manifest.json`` and the artifacts needed to load this variant again."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        manifest = dict(self.manifest)
        if self.artifact is not None and self.artifact.save_hook is not None:
            manifest["load"] = self.artifact.save_hook(directory)
        for path in list((self.artifact.files if self.artifact else {}).values()):
            target = directory / Path(path).name
            if Path(path).resolve() != target.resolve() and Path(path).is_file():
                shutil.copy2(path, target)
        from optim.safe_artifacts import sha256_of

        files = {p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}
        manifest["artifacts"] = {
            name: {"bytes": size, "sha256": sha256_of(directory / name)} for name, size in files.items()
        }
        manifest["size_mb"] = round(sum(files.values()) / 1e6, 3) if files else manifest.get("size_mb")
        self.manifest = manifest
        tmp = directory / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, default=str))
        tmp.replace(directory / MANIFEST)
        return directory

    @staticmethod
    def load(directory: str | Path, device: str | None = None, base: LoadSpec | None = None) -> Variant:
        """Load a saved variant. Nothing in the directory can run code (:mod:`optim.safe_artifacts`).

        ``base``: how the run loads its checkpoint; a variant of the user's own model class is rebuilt with the
        factory named there, never with one the directory names.
        """
        directory = Path(directory)
        if directory.is_file() and directory.name == MANIFEST:
            directory = directory.parent  # the manifest named instead of its folder
        if not directory.exists():
            raise InputError(f"{directory} does not exist; name a variant folder (one holding {MANIFEST})")
        path = directory / MANIFEST
        if not path.is_file():
            inside = sorted(p.parent.name for p in directory.glob(f"*/{MANIFEST}")) if directory.is_dir() else []
            hint = f"; its device folders hold one: {', '.join(f'{directory}/{d}' for d in inside)}" if inside else ""
            raise InputError(f"{directory} is not a variant directory (no {MANIFEST}){hint}")
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("load"), dict):
            raise InputError(f"{path} is not a variant manifest (no 'load' object)")
        kind = manifest["load"].get("kind")
        from optim.registry import load_producers

        load_producers()
        if kind not in LOADERS:
            raise InputError(f"{directory}: variant {manifest.get('name')!r} was saved without a loader ({kind!r})")
        for key in ("name", "recipe"):
            if not isinstance(manifest.get(key), str):
                raise InputError(f"{path}: {key} must be a string")
        return LOADERS[kind](directory, manifest, device or manifest.get("device", "cpu"), base)


def module_runtime(
    module: nn.Module,
    device: str,
    memory_format: torch.memory_format | None = None,
    autocast_dtype: torch.dtype | None = None,
    input_dtype: torch.dtype | None = None,
) -> tuple[Callable[[Any], torch.Tensor], Callable[[torch.Tensor], Any]]:
    """(predict, prepare_input) for a module: inference_mode, optional autocast, layout and dtype of the input."""
    dev = torch.device(device)
    if isinstance(module, nn.Module):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            module.to(dev)  # graph modules from torch.export may refuse .to(); they were built on the device
            if memory_format is not None:
                module.to(memory_format=memory_format)

    def prepare_input(x: torch.Tensor) -> torch.Tensor:
        x = x.to(dev, non_blocking=True)
        if input_dtype is not None:
            x = x.to(input_dtype)
        if memory_format is not None:
            x = x.contiguous(memory_format=memory_format)
        return x

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if autocast_dtype is not None:
                with torch.autocast(device_type=dev.type, dtype=autocast_dtype):
                    return module(x)
            return module(x)

    return predict, prepare_input


def finalize(artifact: Artifact, ctx: BuildContext) -> Artifact:
    """Give a terminal artifact its ``predict``: modules run directly, other kinds through their finalizer."""
    if artifact.predict is not None:
        return artifact
    if artifact.kind in (MODULE, GRAPH, RUNTIME) and artifact.module is not None:
        artifact.predict, artifact.prepare_input = module_runtime(
            artifact.module, ctx.device, artifact.memory_format, artifact.autocast_dtype, artifact.input_dtype
        )
        return artifact
    if artifact.kind in FINALIZERS:
        return FINALIZERS[artifact.kind](artifact, ctx)
    raise InputError(f"a recipe cannot end with a {artifact.kind} artifact here; add a runtime step (e.g. ort)")


def base_manifest(recipe: Recipe | str, loaded: LoadedModel, device: str) -> dict[str, Any]:
    info = loaded.info
    return {
        "name": str(recipe),
        "recipe": str(recipe),
        "device": device,
        "source": {
            "checkpoint": info.source,
            "sha256": info.sha256,
            "arch": info.arch,
            "num_classes": info.num_classes,
            "format": info.source_format,
            "data_spec": info.data_spec,
        },
        "data_config": info.data_config,
        "versions": library_versions(),
    }


def build(recipe: Recipe | str, loaded: LoadedModel, ctx: BuildContext) -> Variant:
    """Run each step of ``recipe`` on a copy of ``loaded.model`` and return the finished :class:`Variant`."""
    import copy

    recipe = parse(recipe) if isinstance(recipe, str) else recipe
    reason = recipe.unavailable_reason(ctx.device)
    if reason:
        raise InputError(f"recipe {recipe} cannot run on {ctx.device} here: {reason}")
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    artifact = Artifact(kind=MODULE, module=copy.deepcopy(loaded.model).eval())
    total = time.perf_counter()
    for step in recipe.steps:
        start, recorded = time.perf_counter(), len(artifact.steps)
        artifact = step.spec.build(artifact, ctx, **step.args)
        entry = {"step": str(step), "config": _plain(step.args), "build_s": round(time.perf_counter() - start, 4)}
        if len(artifact.steps) > recorded:
            artifact.steps[-1] = {**entry, **artifact.steps[-1]}  # the step recorded notes of its own
        else:
            artifact.steps.append(entry)
    artifact = finalize(artifact, ctx)
    manifest = base_manifest(recipe, loaded, ctx.device)
    manifest["steps"] = artifact.steps
    manifest["build_s"] = round(time.perf_counter() - total, 4)
    manifest["artifact_kind"] = artifact.kind
    if artifact.kind in (MODULE, GRAPH) and artifact.module is not None and artifact.onnx_path is None:
        manifest["size_mb"] = round(module_bytes(artifact.module) / 1e6, 3)
    elif artifact.onnx_path is not None and Path(artifact.onnx_path).is_file():
        manifest["size_mb"] = round(Path(artifact.onnx_path).stat().st_size / 1e6, 3)
    return Variant(
        name=str(recipe),
        recipe=str(recipe),
        device=ctx.device,
        predict=artifact.predict,
        prepare_input=artifact.prepare_input or identity,
        manifest=manifest,
        artifact=artifact,
    )


def module_bytes(module: nn.Module) -> int:
    """Bytes of parameters and buffers (what a state dict of this module would hold)."""
    seen, total = set(), 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        with contextlib.suppress(Exception):
            total += tensor.numel() * tensor.element_size()
    return total


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
