"""INT8 producers: ``ptq(x86|ort|tensorrt)``, ``ort-int8``, ``dynamic``, ``qat(x86|ort)``; ``python -m optim.quantize``.

Each method is a recipe step, so ``python -m bench`` and chains such as ``prune(0.5)+ort-int8`` run it.
A step's arguments say everything needed to rebuild it exactly (calibration method, layers kept in FP32),
which is how the CLI's accuracy fallbacks become ordinary, reproducible recipes (``ptq(ort,keep=ends)``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.errors import InputError, MissingDependencyError, run_cli
from optim.artifact import Artifact, BuildContext
from optim.onnx import export_checked, onnx_artifact, parse_key_values
from optim.onnx_export import DEFAULT_OPSET, ExportConfig, ParityConfig, check_opset
from optim.quant_ort import CALIB_METHODS
from optim.registry import MODULE, RUNTIME, register_step
from optim.variant import Variant, register_loader

if __name__ == "__main__":
    # `python -m optim.quantize` runs this file as __main__; run the importable module instead so the recipe steps
    # register exactly once (load_producers imports optim.quantize again).
    from optim.quantize import main as _main

    run_cli(_main)

BACKENDS = ("x86", "ort", "tensorrt")
WRAPPERS = ("cpp", "python")  # ptq(x86,wrapper=...): Inductor's C++ wrapper (default) or its Python one
QAT_BACKENDS = ("x86", "ort")
DEFAULT_QAT_EPOCHS = 1
QAT_LR = 1e-4  # fine-tuning an already trained model: a tenth of the from-scratch rate
QUICK_QAT_STEPS = 8
SENSITIVITY_IMAGES = 64
# INT8 vs its own PT2E simulation: integer kernels round differently, so only near-ties may flip.
INT8_PARITY = ParityConfig(atol=0.5, rtol=0.1, min_cosine=0.99, min_agreement=97.0)
PT2E_FILE = "model.pt2"
GPU_INSTALL_HINT = "on an NVIDIA GPU machine: pip install .[gpu] or build Dockerfile.cuda"


def default_backend(device: str = "cpu") -> str:
    """ORT on CPU, TensorRT on CUDA: what measured fastest, not what the CPU flags suggest.

    On the embedded default (resnet10t, 32 px, batch 1, 2 threads) ORT static INT8 beat PT2E x86 +
    Inductor both on the AMD EPYC development box (no VNNI) and on an Intel Xeon with AVX512-VNNI and
    AMX (ORT 5.9x vs x86 1.6x over eager FP32): on small inputs the compiled graph's per-call overhead
    dominates. DESIGN.md's resnet50/resnet18 figures also favour ORT; PT2E x86 won on
    mobilenetv3/convnext/ViT, so ``python -m bench`` measures both (``ptq(x86)`` and ``ptq(ort)``).
    """
    return "tensorrt" if device == "cuda" else "ort"


# ---------------------------------------------------------------- argument parsing


def parse_keep(value: str) -> str:
    """``ends`` (first conv + classifier), ``N`` (N most sensitive layers) or ``ends+N``."""
    parts = value.split("+")
    ok = all(p == "ends" or (p.isdigit() and int(p) > 0) for p in parts) and len(parts) <= 2
    if not ok or (len(parts) == 2 and parts[0] != "ends"):
        raise InputError(f"keep must be ends, a positive count of layers, or ends+N, got {value!r}")
    return value


def keep_plan(keep: str | None) -> tuple[bool, int]:
    """(keep the ends, how many most-sensitive layers) from a ``keep=`` value."""
    if not keep:
        return False, 0
    ends, count = False, 0
    for part in keep.split("+"):
        if part == "ends":
            ends = True
        else:
            count = int(part)
    return ends, count


def _backend_args(step: str, args: Sequence[str], backends: Sequence[str], known: dict[str, type]) -> dict[str, Any]:
    if args and "=" not in args[0]:
        backend, rest = args[0], args[1:]
    else:
        backend, rest = None, args
    if backend is not None and backend not in backends:
        raise InputError(f"unknown {step} backend {backend!r}; choose one of: {', '.join(backends)}")
    values = parse_key_values(step, rest, known)
    values["backend"] = backend
    values["step_text"] = f"{step}({','.join(args)})" if args else step
    return values


def parse_ptq_args(args: Sequence[str]) -> dict[str, Any]:
    """``ptq(x86)``, ``ptq(ort,calib=entropy)``, ``ptq(ort,keep=ends+2)``, ``ptq(tensorrt)``."""
    values = _backend_args(
        "ptq", args, BACKENDS, {"calib": str, "keep": str, "opset": int, "slim": bool, "wrapper": str}
    )
    _check_ptq_values(values)
    return values


def _check_ptq_values(values: dict[str, Any]) -> None:
    backend = values.get("backend")
    calib = values.get("calib")
    if calib is not None:
        allowed = _calib_choices(backend)
        if calib not in allowed:
            raise InputError(f"calib for {backend or 'ptq'} must be one of {', '.join(allowed)}, got {calib!r}")
    if values.get("keep") is not None:
        parse_keep(values["keep"])
        if backend == "tensorrt":
            raise InputError("keep= is not supported with the tensorrt backend")
    if "opset" in values:
        check_opset(values["opset"])
    if values.get("wrapper") is not None:
        if backend != "x86":
            raise InputError("wrapper= applies to the x86 backend only (how Inductor calls its kernels)")
        if values["wrapper"] not in WRAPPERS:
            raise InputError(f"wrapper must be one of {', '.join(WRAPPERS)}, got {values['wrapper']!r}")


def _calib_choices(backend: str | None) -> tuple[str, ...]:
    from optim.quant_pt2e import X86_CALIB

    if backend == "x86":
        return X86_CALIB
    if backend == "tensorrt":
        return ("max",)
    if backend == "ort":
        return CALIB_METHODS
    return tuple(dict.fromkeys((*CALIB_METHODS, *X86_CALIB)))


def parse_ort_int8_args(args: Sequence[str]) -> dict[str, Any]:
    """``ort-int8`` takes ptq(ort)'s options: ``ort-int8(calib=percentile,keep=ends)``."""
    values = parse_key_values("ort-int8", args, {"calib": str, "keep": str, "opset": int, "slim": bool})
    values["backend"] = "ort"
    _check_ptq_values(values)
    values["step_text"] = f"ort-int8({','.join(args)})" if args else "ort-int8"
    return values


def parse_qat_args(args: Sequence[str]) -> dict[str, Any]:
    """``qat(x86)``, ``qat(ort,epochs=2,lr=5e-5)``."""
    values = _backend_args("qat", args, QAT_BACKENDS, {"epochs": int, "lr": float, "opset": int})
    if values.get("epochs") is not None and values["epochs"] <= 0:
        raise InputError(f"qat epochs must be positive, got {values['epochs']}")
    if values.get("lr") is not None and not values["lr"] > 0:
        raise InputError(f"qat lr must be positive, got {values['lr']}")
    if "opset" in values:
        check_opset(values["opset"])
    return values


# ---------------------------------------------------------------- shared pieces


def calib_batches(ctx: BuildContext) -> list[torch.Tensor]:
    """The calibration split (a seeded subset of train, never val) as CPU batches."""
    batches = [images for images, _ in ctx.data.calib]
    if not batches:
        raise InputError("the calibration split is empty")
    return batches


def _module_digest(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()[:4096])
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(float(tensor.float().sum())).encode())
    return digest.hexdigest()[:16]


def sensitivity_ranking(module: nn.Module, ctx: BuildContext) -> list[dict[str, Any]]:
    """Per-layer INT8 sensitivity on calibration images, cached per module in ``ctx.options``."""
    from optim.quant_sensitivity import layer_sensitivity

    cache = ctx.options.setdefault("_sensitivity", {})
    key = _module_digest(module)
    if key not in cache:
        images, seen = [], 0
        for batch in calib_batches(ctx):
            images.append(batch)
            seen += batch.shape[0]
            if seen >= SENSITIVITY_IMAGES:
                break
        cache[key] = layer_sensitivity(module, torch.cat(images)[:SENSITIVITY_IMAGES])
    return cache[key]


def keep_modules(module: nn.Module, ctx: BuildContext, keep: str | None) -> tuple[list[str], dict[str, Any]]:
    """Module names to leave in FP32 for ``keep``, and notes saying why each one."""
    from optim.quant_sensitivity import end_layers, most_sensitive

    ends, count = keep_plan(keep)
    names: list[str] = []
    notes: dict[str, Any] = {}
    if ends:
        names += end_layers(module)
        notes["kept_ends"] = list(names)
    if count:
        ranking = sensitivity_ranking(module, ctx)
        chosen = most_sensitive(ranking, count, exclude=names)
        names += chosen
        notes["kept_sensitive"] = [r for r in ranking if r["layer"] in chosen]
        notes["sensitivity"] = {
            "method": "one layer at a time simulated INT8 in eager; score = 1 - cosine of logits vs FP32",
            "images": SENSITIVITY_IMAGES,
            "top": ranking[:8],
        }
    return names, notes


def _cached_fp32_onnx(module: nn.Module, ctx: BuildContext, cfg: ExportConfig) -> tuple[Path, dict[str, Any]]:
    """FP32 export + ORT pre-processing, shared by every ORT INT8 candidate of one module (fallbacks)."""
    from optim.quant_ort import preprocess

    cache = ctx.options.setdefault("_ort_fp32", {})
    key = (_module_digest(module), cfg.opset, cfg.slim)
    if key in cache and Path(cache[key][0]).is_file():
        return Path(cache[key][0]), dict(cache[key][1])
    base = ctx.options.get("_cache_dir") or ctx.workdir
    folder = Path(base) / f"fp32-{key[0]}-{cfg.opset}-{int(cfg.slim)}"
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "fp32.onnx"
    notes = {"export": export_checked(module, ctx, cfg, fp32)}
    pre = folder / "fp32-pre.onnx"
    notes.update(preprocess(fp32, pre))
    cache[key] = (str(pre), notes)
    return pre, dict(notes)


# ---------------------------------------------------------------- ORT static INT8


def build_ort_int8(artifact: Artifact, ctx: BuildContext, args: dict[str, Any]) -> Artifact:
    """Export (parity-checked), pre-process, calibrate, write QDQ; shared by ptq(ort), ort-int8, onnx --int8."""
    from optim.quant_ort import OrtQuantConfig, end_nodes, nodes_for_modules, quantize_onnx

    module = _eager_module(artifact, "ptq(ort)")
    export_cfg = ExportConfig(opset=args.get("opset") or DEFAULT_OPSET, slim=args.get("slim", True))
    pre, notes = _cached_fp32_onnx(module, ctx, export_cfg)
    names, keep_notes = keep_modules(module, ctx, args.get("keep"))
    nodes: list[str] = []
    ends, count = keep_plan(args.get("keep"))
    if ends:
        nodes += end_nodes(pre)
    if count:
        sensitive = keep_notes.get("kept_sensitive", [])
        mapping = nodes_for_modules(pre, [r["layer"] for r in sensitive])
        missing = [r["layer"] for r in sensitive if r["layer"] not in mapping]
        if missing:
            keep_notes["unmapped_layers"] = missing  # said in the manifest, never silently dropped
        nodes += [mapping[name] for name in mapping]
    cfg = OrtQuantConfig(calib=args.get("calib") or "minmax", keep_nodes=tuple(dict.fromkeys(nodes)))
    out = ctx.workdir / "model.onnx"
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    batches = [b.numpy() for b in calib_batches(ctx)]
    notes.update(quantize_onnx(pre, out, batches, cfg))
    notes.update(keep_notes)
    notes["backend"] = "onnxruntime static INT8 (QDQ, U8 activations / S8 per-channel weights)"
    entry = {"step": args["step_text"], "config": _config(args), **notes}
    return onnx_artifact(out, [*artifact.steps, entry])


# ---------------------------------------------------------------- PT2E x86


def x86_artifact(
    graph: nn.Module, ctx: BuildContext, steps: list[dict[str, Any]], notes: dict[str, Any], wrapper: str = "cpp"
) -> Artifact:
    """A runtime artifact around a converted PT2E graph: compiled with freezing unless the caller defers it."""
    from optim.quant_pt2e import compile_frozen, save_graph

    c, h, w = ctx.loaded.info.input_size
    cpp = wrapper == "cpp"
    if ctx.options.get("defer_compile"):
        predict = _graph_predict(graph)
        notes["compiled"] = False
    else:
        compiled, seconds = compile_frozen(graph, [(1, c, h, w)], cpp_wrapper=cpp)
        predict = _graph_predict(compiled)
        how = "torch.compile + inductor freezing" + (" + cpp_wrapper" if cpp else "")
        notes.update({"compiled": True, "compile": how, "compile_s": round(seconds, 3)})

    def save_hook(directory: Path) -> dict[str, Any]:
        save_graph(graph, torch.randn(2, c, h, w), directory / PT2E_FILE)
        return {"kind": "pt2e-x86", "file": PT2E_FILE, "compile": True, "input_size": [c, h, w], "wrapper": wrapper}

    return Artifact(
        kind=RUNTIME,
        module=graph,
        predict=predict,
        prepare_input=_cpu_input,
        steps=[*steps, notes],
        save_hook=save_hook,
    )


def _graph_predict(fn):
    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fn(x)

    return predict


def _cpu_input(x: torch.Tensor) -> torch.Tensor:
    return x.detach().cpu().float().contiguous()


def build_x86(artifact: Artifact, ctx: BuildContext, args: dict[str, Any]) -> Artifact:
    from optim.quant_pt2e import ptq_x86

    if ctx.device != "cpu":
        raise InputError("ptq(x86) runs on CPU only; use ptq(tensorrt) on cuda")
    module = _eager_module(artifact, "ptq(x86)")
    names, keep_notes = keep_modules(module, ctx, args.get("keep"))
    graph, notes = ptq_x86(module, ctx.example_input(2), calib_batches(ctx), args.get("calib") or "histogram", names)
    entry = {"step": args["step_text"], "config": _config(args), **notes, **keep_notes}
    return x86_artifact(graph, ctx, artifact.steps, entry, args.get("wrapper") or "cpp")


@register_loader("pt2e-x86", compiles=True)
def load_pt2e_x86(directory: Path, manifest: dict[str, Any], device: str) -> Variant:
    """The saved quantized ExportedProgram, compiled again with freezing (compile time is paid at load)."""
    from optim.quant_pt2e import compile_frozen, load_graph

    if device != "cpu":
        raise InputError("a PT2E x86 variant runs on CPU only")
    spec = manifest["load"]
    path = directory / spec["file"]
    if not path.is_file():
        raise InputError(f"{directory}: {spec['file']} is missing")
    graph = load_graph(path)
    c, h, w = spec.get("input_size") or manifest["data_config"]["input_size"]
    compiled, _ = compile_frozen(graph, [(1, c, h, w)], cpp_wrapper=spec.get("wrapper", "python") == "cpp")
    return Variant(manifest["name"], manifest["recipe"], device, _graph_predict(compiled), manifest, _cpu_input)


# ---------------------------------------------------------------- TensorRT


def tensorrt_reason(device: str) -> str | None:
    """Why ptq(tensorrt) cannot run here, always naming how to get TensorRT."""
    from optim.tensorrt import missing_reason

    reason = missing_reason(device, "int8")
    if reason and "pip install" not in reason:
        reason += f" ({GPU_INSTALL_HINT})"
    return reason


def build_tensorrt(artifact: Artifact, ctx: BuildContext, args: dict[str, Any]) -> Artifact:
    """The same code as ``trt(int8)`` (optim.tensorrt): ModelOpt calibration on train images, Torch-TensorRT engine."""
    from optim.tensorrt import trt_step

    reason = tensorrt_reason(ctx.device)
    if reason:
        raise MissingDependencyError(f"ptq(tensorrt): {reason}")
    return trt_step(artifact, ctx, precision="int8", step_text=args["step_text"])


# ---------------------------------------------------------------- steps


def _eager_module(artifact: Artifact, step: str) -> nn.Module:
    if artifact.module is None:
        raise InputError(f"{step} needs an eager module")
    return artifact.module.float().cpu().eval()


def _config(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k != "step_text"}


PTQ_USAGE = (
    "ptq(x86|ort|tensorrt[,calib=minmax|entropy|percentile|histogram][,keep=ends|N|ends+N][,wrapper=cpp|python])"
)


@register_step(
    "ptq",
    accepts=[MODULE],
    produces=RUNTIME,
    parse_args=parse_ptq_args,
    usage=PTQ_USAGE,
    description="static INT8 post-training quantization calibrated on train images (x86 PT2E, ORT QDQ, TensorRT)",
    default_recipes={"cpu": ["ptq(x86)", "ptq(ort)"]},  # on cuda the sweep runs trt(int8), the same build
    reload_compiles=lambda args, device: (args.get("backend") or default_backend(device)) == "x86",
)
def ptq_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """Dispatch on the backend; ``ptq`` without one picks the machine's best (see :func:`default_backend`)."""
    args["backend"] = args.get("backend") or default_backend(ctx.device)
    if args["backend"] == "ort":
        return build_ort_int8(artifact, ctx, args)
    if args["backend"] == "x86":
        return build_x86(artifact, ctx, args)
    return build_tensorrt(artifact, ctx, args)


@register_step(
    "ort-int8",
    accepts=[MODULE],
    produces=RUNTIME,
    parse_args=parse_ort_int8_args,
    usage="ort-int8[(calib=...,keep=...)]  (same as ptq(ort))",
    description="alias of ptq(ort): ONNX export + ORT static INT8 QDQ, e.g. prune(0.5)+ort-int8",
)
def ort_int8_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """The same code as ptq(ort)."""
    return build_ort_int8(artifact, ctx, args)


@register_step(
    "dynamic",
    accepts=[MODULE],
    produces=RUNTIME,
    devices=["cpu"],
    description="dynamic INT8 for nn.Linear only (ViT/MLP heads); ConvNets gain little",
)
def dynamic_step(artifact: Artifact, ctx: BuildContext) -> Artifact:
    """Weights of Linear layers in INT8, activations quantized per batch at run time (no calibration)."""
    module = _eager_module(artifact, "dynamic")
    total = sum(p.numel() for p in module.parameters())
    linear = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))
    source = _fp32_save_hook(module, ctx)
    quantized = apply_dynamic(module)
    notes = {
        "step": "dynamic",
        "quantizer": "torch.ao.quantization.quantize_dynamic (qint8, nn.Linear)",
        "linear_weight_share": round(linear / max(total, 1), 4),
        "note": (
            f"only nn.Linear layers are quantized ({100 * linear / max(total, 1):.1f}% of the weights here); "
            "ConvNets gain little: their time is in convolutions"
        ),
    }
    out = Artifact(kind=RUNTIME, module=quantized, steps=[*artifact.steps, notes], save_hook=source)
    out.predict, out.prepare_input = _graph_predict(quantized), _cpu_input
    return out


def apply_dynamic(module: nn.Module) -> nn.Module:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's quantize_dynamic is deprecated but still the fast eager path
        return torch.ao.quantization.quantize_dynamic(module.eval(), {nn.Linear}, dtype=torch.qint8)


def _fp32_save_hook(module: nn.Module, ctx: BuildContext):
    """Dynamic quantization has no calibration: saving the FP32 weights and re-applying it rebuilds it exactly."""
    import copy

    from models.checkpoint import save

    fp32 = copy.deepcopy(module)
    info = ctx.loaded.info
    try:
        from models.pruned import with_pruned_layers

        info = with_pruned_layers(info, fp32)
    except ImportError:  # pruning not installed in this checkout: an unpruned model needs nothing more
        pass

    def hook(directory: Path) -> dict[str, Any]:
        save(directory / "model.pt", fp32, info)
        return {"kind": "dynamic-int8", "checkpoint": "model.pt", "rebuild": "quantize_dynamic on load"}

    return hook


@register_loader("dynamic-int8")
def load_dynamic(directory: Path, manifest: dict[str, Any], device: str) -> Variant:
    import models

    loaded = models.load(directory / manifest["load"]["checkpoint"])
    quantized = apply_dynamic(loaded.model)
    return Variant(manifest["name"], manifest["recipe"], device, _graph_predict(quantized), manifest, _cpu_input)


QAT_USAGE = "qat(x86|ort[,epochs=N][,lr=F])"


@register_step(
    "qat",
    accepts=[MODULE],
    produces=RUNTIME,
    parse_args=parse_qat_args,
    devices=["cpu"],
    usage=QAT_USAGE,
    description="PT2E quantization-aware fine-tuning on train, then x86 Inductor or ORT QDQ",
    reload_compiles=lambda args, device: (args.get("backend") or default_backend(device)) == "x86",
)
def qat_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """Fake-quantized fine-tuning with the models.train loop; not in the default sweep (minutes on 2 cores)."""
    from models.train import TrainConfig, train
    from optim.quant_pt2e import qat_convert, qat_prepare

    backend = args.get("backend") or default_backend(ctx.device)
    if ctx.device != "cpu":
        raise InputError("qat runs on CPU here (x86 or ort backends)")
    module = _eager_module(artifact, "qat")
    epochs = args.get("epochs") or DEFAULT_QAT_EPOCHS
    cfg = TrainConfig(
        epochs=1 if ctx.quick else epochs,
        lr=args.get("lr") or QAT_LR,
        weight_decay=0.0,
        seed=ctx.seed,
        max_steps_per_epoch=QUICK_QAT_STEPS if ctx.quick else None,
        progress=bool(ctx.options.get("progress", False)),
    )
    prepared = qat_prepare(module, ctx.example_input(2), keep=[])
    history = train(prepared, ctx.data.train, None, cfg, desc="qat")
    graph = qat_convert(prepared)
    notes: dict[str, Any] = {
        "step": args["step_text"],
        "config": {**_config(args), "backend": backend},
        "quantizer": "torchao X86InductorQuantizer (PT2E QAT)",
        "finetune": {
            "epochs": cfg.epochs,
            "max_steps_per_epoch": cfg.max_steps_per_epoch,
            "lr": cfg.lr,
            "train_seconds": round(history["train_seconds"], 2),
            "final_loss": history["history"][-1]["loss"] if history["history"] else None,
            "split": "train",
        },
    }
    if backend == "x86":
        return x86_artifact(graph, ctx, artifact.steps, notes)
    path = ctx.workdir / "model.onnx"
    export_cfg = ExportConfig(opset=args.get("opset") or DEFAULT_OPSET, slim=False)  # keep the learned QDQ pairs
    notes["export"] = export_checked(graph, ctx, export_cfg, path, parity=INT8_PARITY)
    return onnx_artifact(path, [*artifact.steps, notes])


# ---------------------------------------------------------------- CLI


def build_parser():
    from models.errors import ArgumentParser
    from optim.quant_cli import add_common_arguments

    p = ArgumentParser(prog="python -m optim.quantize", description="INT8 quantization with an accuracy budget.")
    p.add_argument("ckpt", nargs="?", help="checkpoint (default: the embedded digits model)")
    p.add_argument("--method", default="ptq", choices=["ptq", "qat", "dynamic"], help="default ptq")
    p.add_argument("--backend", choices=list(BACKENDS), help="default: ort on cpu (measured fastest), tensorrt on cuda")
    p.add_argument("--calib", help="ort: minmax (default) | entropy | percentile; x86: histogram (default) | minmax")
    p.add_argument("--epochs", type=int, default=DEFAULT_QAT_EPOCHS, help="qat fine-tuning epochs (default 1)")
    add_common_arguments(p)
    return p


def recipe_from_args(args: Any) -> str:
    """The recipe the CLI options describe (the variant's name)."""
    if args.method == "dynamic":
        if args.backend or args.calib:
            raise InputError("--method dynamic takes no --backend or --calib (it quantizes nn.Linear on CPU)")
        return "dynamic"
    backend = args.backend or default_backend(args.device)
    if args.method == "qat":
        if backend not in QAT_BACKENDS:
            raise InputError(f"--method qat supports --backend {' or '.join(QAT_BACKENDS)}, got {backend!r}")
        if args.epochs <= 0:
            raise InputError(f"--epochs must be positive, got {args.epochs}")
        extra = [] if args.epochs == DEFAULT_QAT_EPOCHS else [f"epochs={args.epochs}"]
        return f"qat({','.join([backend, *extra])})"
    if backend == "tensorrt":
        reason = tensorrt_reason(args.device)
        if reason:
            raise MissingDependencyError(f"--backend tensorrt: {reason}")
    parts = [backend]
    if args.calib:
        parse_ptq_args([backend, f"calib={args.calib}"])  # validates the pair, one line on error
        parts.append(f"calib={args.calib}")
    return f"ptq({','.join(parts)})"


def main(argv: Sequence[str] | None = None) -> int:
    from optim.quant_cli import run_producer_cli

    args = build_parser().parse_args(argv)
    recipe = recipe_from_args(args)
    return run_producer_cli(recipe, args, prog="optim.quantize", fallbacks=args.method == "ptq")
