"""The model file of an exported folder, in its runtime's own format, from the variant's saved folder.

Each saved kind (the manifest's ``load.kind``) has one writer: ONNX and OpenVINO IR files are copied as they were
measured (their sha256 checked against the manifest first), a TensorRT engine likewise; eager and pruned variants
become a ``torch.export`` program (``model.pt2``) from their saved weights; a PT2E INT8 program is copied and the
loader is told to compile it with Inductor freezing, as it was measured. What a writer returns (:class:`ModelFiles`)
says which runtime section predict.py gets, how it is configured, and what requirements.txt must pin.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.errors import InputError

PT2_FILE = "model.pt2"


@dataclass
class ModelFiles:
    """What a writer put into the folder and how predict.py must run it."""

    runtime: str  # onnxruntime | openvino | torch | tensorrt: the runtime section of predict.py
    files: list[str]
    options: dict[str, Any]  # predict.py's RUNTIME_OPTIONS
    packages: list[str]  # pip distributions whose measured versions requirements.txt pins
    exact: bool = True  # the same kernels run as were measured: the check requires identical top-1
    static_shapes: bool = False
    gpu: bool = False
    notes: list[str] = field(default_factory=list)


WRITERS: dict[str, Callable[..., ModelFiles]] = {}


def writer(kind: str) -> Callable:
    def register(fn: Callable[..., ModelFiles]) -> Callable[..., ModelFiles]:
        WRITERS[kind] = fn
        return fn

    return register


def _copy_checked(source: Path, manifest: dict[str, Any], name: Any, out: Path, what: str) -> str:
    """Copy one artifact the manifest names, refusing a file that is not the one measured."""
    from data.errors import CheckpointError
    from optim.safe_artifacts import artifact_file, check_recorded_digest

    try:
        path = artifact_file(source, name, what)
        check_recorded_digest(source, manifest, path)
    except CheckpointError as exc:
        raise InputError(str(exc)) from None
    shutil.copy2(path, out / path.name)
    return path.name


@writer("onnx")
def onnx_files(source: Path, manifest: dict[str, Any], out: Path, ctx: dict[str, Any]) -> ModelFiles:
    from optim.safe_artifacts import check_onnx_external_data

    name = _copy_checked(source, manifest, manifest["load"].get("file"), out, "ONNX file")
    check_onnx_external_data(out / name)
    files = [name] + _external_data(out / name, source, out)
    gpu = ctx["device"] == "cuda"
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
    notes = []
    if gpu:
        notes.append("on CUDA the measurement also tried ONNX Runtime's TensorRT provider; this folder uses CUDA")
    package = "onnxruntime-gpu" if gpu else "onnxruntime"
    return ModelFiles("onnxruntime", files, {"file": name, "providers": providers}, [package], gpu=gpu, notes=notes)


def _external_data(model: Path, source: Path, out: Path) -> list[str]:
    """Files an ONNX model keeps its tensors in (already checked to be plain names beside it), copied too."""
    import onnx

    names = []
    for tensor in onnx.load(str(model), load_external_data=False).graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next(e.value for e in tensor.external_data if e.key == "location")
            if location not in names:
                shutil.copy2(source / location, out / location)
                names.append(location)
    return names


@writer("openvino")
def openvino_files(source: Path, manifest: dict[str, Any], out: Path, ctx: dict[str, Any]) -> ModelFiles:
    spec = manifest["load"]
    xml = _copy_checked(source, manifest, spec.get("xml"), out, "OpenVINO graph")
    weights = _copy_checked(source, manifest, spec.get("bin"), out, "OpenVINO weights")
    if Path(xml).with_suffix(".bin").name != weights:
        raise InputError(f"{source}: the OpenVINO weights must sit beside the graph as {Path(xml).stem}.bin")
    precision = str(spec.get("precision") or "f32")
    note = "weights copied as measured (saved with compress_to_fp16=False)"
    return ModelFiles("openvino", [xml, weights], {"xml": xml, "precision": precision}, ["openvino"], notes=[note])


@writer("tensorrt")
def tensorrt_files(source: Path, manifest: dict[str, Any], out: Path, ctx: dict[str, Any]) -> ModelFiles:
    spec = manifest["load"]
    name = _copy_checked(source, manifest, spec.get("engine"), out, "engine")
    note = (
        f"a TensorRT engine runs only on the GPU and TensorRT version that built it ({spec.get('gpu')}, TensorRT "
        f"{spec.get('tensorrt')}); it was not run by the export's check"
    )
    packages = ["torch", "torch-tensorrt", "tensorrt"]
    return ModelFiles("tensorrt", [name], {"file": name}, packages, exact=False, gpu=True, notes=[note])


@writer("pt2e-x86")
def pt2e_files(source: Path, manifest: dict[str, Any], out: Path, ctx: dict[str, Any]) -> ModelFiles:
    from optim.int8 import saved_wrapper
    from optim.safe_artifacts import check_pt2

    spec = manifest["load"]
    name = _copy_checked(source, manifest, spec.get("file"), out, "program")
    check_pt2(out / name)
    options = {
        "file": name,
        "torchao": True,
        "compile": True,
        "inductor": {"freezing": True},
        "cpp_wrapper": saved_wrapper(spec),  # auto: the C++ wrapper at batch 1 only, as measured
    }
    note = "INT8 PT2E program; predict.py compiles it with torch.compile and Inductor freezing, as it was measured"
    return ModelFiles("torch", [name], options, ["torch", "torchao"], exact=False, static_shapes=True, notes=[note])


def _export_program(module: Any, input_size: tuple[int, int, int], path: Path, half: bool = False) -> None:
    """``torch.export`` with a dynamic batch axis, saved as a ``.pt2`` archive (tensors and operators only)."""
    import torch

    c, h, w = input_size
    example = torch.randn(2, c, h, w)
    module = module.float().cpu().eval()
    if half:
        module, example = module.half(), example.half()
    try:
        with torch.no_grad():
            program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    except Exception as exc:  # torch.export raises many types for code it cannot capture
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"torch.export cannot capture this model, so it cannot be exported: {first}") from None
    torch.export.save(program, str(path))


def _eager_module(source: Path, manifest: dict[str, Any], ctx: dict[str, Any]) -> Any:
    from data.errors import CheckpointError
    from optim.variant import saved_checkpoint

    try:
        return saved_checkpoint(source, manifest, ctx.get("load")).model
    except CheckpointError as exc:
        raise InputError(str(exc)) from None


@writer("eager")
def eager_files(source: Path, manifest: dict[str, Any], out: Path, ctx: dict[str, Any]) -> ModelFiles:
    spec = manifest["load"]
    half = bool(spec.get("half"))
    _export_program(_eager_module(source, manifest, ctx), ctx["input_size"], out / PT2_FILE, half)
    options = {
        "file": PT2_FILE,
        "device": ctx["device"],
        "channels_last": bool(spec.get("channels_last")),
        "autocast": spec.get("autocast"),
        "half": half,
    }
    note = "the eager module as a torch.export program: the same operators, called without Python module code"
    return ModelFiles("torch", [PT2_FILE], options, ["torch"], gpu=ctx["device"] == "cuda", notes=[note])


@writer("compile")
def compile_files(source: Path, manifest: dict[str, Any], out: Path, ctx: dict[str, Any]) -> ModelFiles:
    spec = manifest["load"]
    cfg = dict(spec.get("config") or {})
    if "inner" in spec:
        if (spec["inner"] or {}).get("kind") != "pt2e-x86":
            raise InputError(f"a compiled {spec['inner'].get('kind')!r} variant cannot be exported yet")
        files = pt2e_files(source, {**manifest, "load": spec["inner"]}, out, ctx)
    else:
        files = eager_files(source, manifest, out, ctx)
        files.options["autocast"] = "bf16" if cfg.get("bf16") else ("fp16" if cfg.get("fp16") else None)
    freezing = cfg.get("freezing")
    freezing = ctx["device"] == "cpu" if freezing is None else bool(freezing)
    inductor: dict[str, Any] = {**files.options.get("inductor", {}), "freezing": freezing}
    if cfg.get("cudnn_convs"):
        inductor["max_autotune_conv_backends"] = "ATEN"
    files.options.update(compile=True, compile_mode=cfg.get("mode", "default"), inductor=inductor)
    files.exact, files.static_shapes = False, True
    files.notes = [
        f"predict.py compiles the program with torch.compile (mode {cfg.get('mode', 'default')}, "
        f"freezing {'on' if freezing else 'off'}), as it was measured"
    ]
    return files


def write_model(source: Path, manifest: dict[str, Any], out: Path, ctx: dict[str, Any]) -> ModelFiles:
    """Write the model files of the saved variant in ``source`` into ``out``; one line for a kind with no writer."""
    kind = str(manifest["load"].get("kind"))
    if kind not in WRITERS:
        known = ", ".join(sorted(WRITERS))
        recipe = manifest.get("recipe")
        raise InputError(f"variant {recipe} was saved as {kind!r}, which cannot be exported yet (exportable: {known})")
    return WRITERS[kind](source, manifest, out, ctx)
