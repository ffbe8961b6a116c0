"""Static INT8 post-training quantization: ``ptq(BACKEND,...)`` and its ``ort-int8`` alias.

Backends register themselves (:func:`register_ptq_backend`): PT2E with the X86InductorQuantizer (``x86``), ONNX
Runtime QDQ (``ort``), TensorRT through ModelOpt (``tensorrt``) and OpenVINO through NNCF (``ov``, in
:mod:`optim.openvino`). Each says which calibration methods and options it takes, whether loading its variant
compiles again, and what to try when it misses the accuracy budget, so a new INT8 backend is one registration in
its own module: ``ptq`` itself does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from data.errors import InputError, MissingDependencyError
from optim.artifact import Artifact, BuildContext
from optim.backends.onnx_export import DEFAULT_OPSET, ExportConfig, check_opset
from optim.int8 import (
    calib_batches,
    default_backend,
    eager_module,
    int8_slow_hints,
    keep_modules,
    keep_plan,
    module_digest,
    parse_keep,
    step_config,
    x86_artifact,
)
from optim.onnx import export_checked, onnx_artifact, parse_key_values
from optim.registry import MODULE, RUNTIME, register_step

SENSITIVE_STEPS = (1, 2, 4, 8)  # fallbacks keep this many of the most sensitive layers in FP32, in turn
GPU_INSTALL_HINT = "on an NVIDIA GPU machine: pip install .[gpu] or build Dockerfile.cuda"
WRAPPERS = ("cpp", "python")  # ptq(x86,wrapper=...): Inductor's C++ wrapper (default) or its Python one


@dataclass(frozen=True)
class PtqBackend:
    """One INT8 backend of ``ptq``: how to build it and what its arguments may be."""

    build: Callable[[Artifact, BuildContext, dict[str, Any]], Artifact]
    calib_methods: tuple[str, ...] = ()  # the first is the default; fallbacks try the others in ``fallback_order``
    options: dict[str, type] = field(default_factory=dict)  # key=value arguments besides calib
    keep: bool = True  # supports keep=ends|N|ends+N (layers left in FP32)
    reload_compiles: bool = False
    fallback_order: tuple[str, ...] = ()
    fallbacks: Callable[[Any], list[tuple[str, str]]] | None = None  # replaces the calibration/keep plan
    available: Callable[[str], str | None] | None = None
    check: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # validates the backend's own options


PTQ_BACKENDS: dict[str, PtqBackend] = {}


def register_ptq_backend(name: str, backend: PtqBackend) -> None:
    PTQ_BACKENDS[name] = backend


def ptq_backend(name: str) -> PtqBackend:
    if name not in PTQ_BACKENDS:
        raise InputError(f"unknown ptq backend {name!r}; choose one of: {', '.join(PTQ_BACKENDS)}")
    return PTQ_BACKENDS[name]


def _check_values(values: dict[str, Any]) -> dict[str, Any]:
    backend = values.get("backend")
    spec = ptq_backend(backend) if backend else None
    calib = values.get("calib")
    if calib is not None:
        allowed = (
            spec.calib_methods
            if spec
            else tuple(dict.fromkeys(m for b in PTQ_BACKENDS.values() for m in b.calib_methods))
        )
        if calib not in allowed:
            raise InputError(f"calib for {backend or 'ptq'} must be one of {', '.join(allowed)}, got {calib!r}")
    if values.get("keep") is not None:
        parse_keep(values["keep"])
        if spec and not spec.keep:
            raise InputError(f"keep= is not supported with the {backend} backend")
    if "opset" in values:
        check_opset(values["opset"])
    if values.get("wrapper") is not None and values["wrapper"] not in WRAPPERS:
        raise InputError(f"wrapper must be one of {', '.join(WRAPPERS)}, got {values['wrapper']!r}")
    if spec and spec.check is not None:
        spec.check(values)
    return values


def parse_ptq_args(args: Sequence[str]) -> dict[str, Any]:
    """``ptq(x86)``, ``ptq(ort,calib=entropy)``, ``ptq(ort,keep=ends+2)``, ``ptq(ov,preset=mixed)``."""
    backend, rest = (args[0], args[1:]) if args and "=" not in args[0] else (None, args)
    known: dict[str, type] = {"calib": str, "keep": str}
    if backend is not None:
        known.update(ptq_backend(backend).options)
    else:
        for spec in PTQ_BACKENDS.values():
            known.update(spec.options)
    values = parse_key_values("ptq", rest, known)
    values["backend"] = backend
    values["step_text"] = f"ptq({','.join(args)})" if args else "ptq"
    return _check_values(values)


def parse_ort_int8_args(args: Sequence[str]) -> dict[str, Any]:
    """``ort-int8`` takes ptq(ort)'s options: ``ort-int8(calib=percentile,keep=ends)``."""
    values = parse_key_values("ort-int8", args, {"calib": str, "keep": str, **ptq_backend("ort").options})
    values["backend"] = "ort"
    values["step_text"] = f"ort-int8({','.join(args)})" if args else "ort-int8"
    return _check_values(values)


def ptq_fallbacks(recipe: Any) -> list[tuple[str, str]]:
    """(recipe, why) to try in order when a recipe ending in ``ptq``/``ort-int8`` misses the accuracy budget: the
    backend's own plan, else the other calibration methods, then first conv + classifier in FP32, then the most
    sensitive layers too."""
    last = recipe.steps[-1]
    prefix = "+".join(str(s) for s in recipe.steps[:-1])
    backend_name = last.args.get("backend") or "ort"
    backend = ptq_backend(backend_name)
    if backend.fallbacks is not None:
        return backend.fallbacks(recipe)
    if not backend.calib_methods:
        return []
    default = backend.calib_methods[0]
    calib = last.args.get("calib") or default

    def make(calib_value: str, keep: str | None) -> str:
        parts = [backend_name] + ([f"calib={calib_value}"] if calib_value != default else [])
        if keep:
            parts.append(f"keep={keep}")
        step = f"ptq({','.join(parts)})"
        return f"{prefix}+{step}" if prefix else step

    order = backend.fallback_order or backend.calib_methods
    plan = [(make(c, None), f"calibration method {c} instead of {calib}") for c in order if c != calib]
    if backend.keep:
        plan.append((make(calib, "ends"), "first conv and classifier kept in FP32"))
        for n in SENSITIVE_STEPS:
            plan.append((make(calib, f"ends+{n}"), f"first conv, classifier and the {n} most sensitive layers in FP32"))
    return plan


def _reload_compiles(args: dict[str, Any], device: str) -> bool:
    return ptq_backend(args.get("backend") or default_backend(device)).reload_compiles


PTQ_USAGE = "ptq(x86|ort|tensorrt|ov[,calib=...][,keep=ends|N|ends+N][,BACKEND OPTIONS])  (python -m optim list ptq)"


@register_step(
    "ptq",
    accepts=[MODULE],
    produces=RUNTIME,
    parse_args=parse_ptq_args,
    usage=PTQ_USAGE,
    description="static INT8 PTQ calibrated on train images (x86 PT2E, ORT QDQ, TensorRT, OpenVINO)",
    default_recipes={"cpu": ["ptq(x86)", "ptq(ort)", "ptq(ov)"]},  # on cuda the sweep runs trt(int8), the same build
    reload_compiles=_reload_compiles,
    fallbacks=ptq_fallbacks,
    slow_hints=int8_slow_hints,
    needs=lambda args, device: ("x86_avx2",) if args.get("backend") == "ov" else (),
)
def ptq_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """Dispatch on the backend; ``ptq`` without one picks the machine's best (see :func:`default_backend`)."""
    args["backend"] = args.get("backend") or default_backend(ctx.device)
    backend = ptq_backend(args["backend"])
    if backend.available is not None and (reason := backend.available(ctx.device)):
        raise MissingDependencyError(f"ptq({args['backend']}): {reason}")
    return backend.build(artifact, ctx, args)


@register_step(
    "ort-int8",
    accepts=[MODULE],
    produces=RUNTIME,
    parse_args=parse_ort_int8_args,
    usage="ort-int8[(calib=...,keep=...)]  (same as ptq(ort))",
    description="alias of ptq(ort): ONNX export + ORT static INT8 QDQ, e.g. prune(0.5)+ort-int8",
    default_recipes={"cpu": ["prune(0.5)+ort-int8"]},
    fallbacks=ptq_fallbacks,
    slow_hints=int8_slow_hints,
)
def ort_int8_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """The same code as ptq(ort)."""
    return build_ort_int8(artifact, ctx, args)


# ---------------------------------------------------------------- the backends defined here


def _cached_fp32_onnx(module: nn.Module, ctx: BuildContext, cfg: ExportConfig) -> tuple[Path, dict[str, Any]]:
    """FP32 export + ORT pre-processing, shared by every ORT INT8 candidate of one module (fallbacks)."""
    from optim.backends.ort_quant import preprocess

    cache = ctx.options.setdefault("_ort_fp32", {})
    key = (module_digest(module), cfg.opset, cfg.slim)
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


def build_ort_int8(artifact: Artifact, ctx: BuildContext, args: dict[str, Any]) -> Artifact:
    """Export (parity-checked), pre-process, calibrate, write QDQ; shared by ptq(ort), ort-int8, onnx --int8."""
    from optim.backends.ort_quant import OrtQuantConfig, end_nodes, nodes_for_modules, quantize_onnx

    module = eager_module(artifact, "ptq(ort)")
    export_cfg = ExportConfig(opset=args.get("opset") or DEFAULT_OPSET, slim=args.get("slim", True))
    pre, notes = _cached_fp32_onnx(module, ctx, export_cfg)
    _, keep_notes = keep_modules(module, ctx, args.get("keep"))
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
    notes.update(quantize_onnx(pre, out, [b.numpy() for b in calib_batches(ctx)], cfg))
    notes.update(keep_notes)
    notes["backend"] = "onnxruntime static INT8 (QDQ, U8 activations / S8 per-channel weights)"
    return onnx_artifact(out, [*artifact.steps, {"step": args["step_text"], "config": step_config(args), **notes}])


def build_x86(artifact: Artifact, ctx: BuildContext, args: dict[str, Any]) -> Artifact:
    from optim.backends.pt2e import ptq_x86

    if ctx.device != "cpu":
        raise InputError("ptq(x86) runs on CPU only; use ptq(tensorrt) on cuda")
    module = eager_module(artifact, "ptq(x86)")
    names, keep_notes = keep_modules(module, ctx, args.get("keep"))
    graph, notes = ptq_x86(module, ctx.example_input(2), calib_batches(ctx), args.get("calib") or "histogram", names)
    entry = {"step": args["step_text"], "config": step_config(args), **notes, **keep_notes}
    return x86_artifact(graph, ctx, artifact.steps, entry, args.get("wrapper") or "cpp")


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

    return trt_step(artifact, ctx, precision="int8", step_text=args["step_text"])


def _x86_calib() -> tuple[str, ...]:
    from optim.backends.pt2e import X86_CALIB

    return X86_CALIB


def _ort_calib() -> tuple[str, ...]:
    from optim.backends.ort_quant import CALIB_METHODS

    return CALIB_METHODS


register_ptq_backend(
    "x86",
    PtqBackend(build_x86, calib_methods=_x86_calib(), options={"wrapper": str}, reload_compiles=True),
)
register_ptq_backend(
    "ort",
    PtqBackend(
        build_ort_int8,
        calib_methods=_ort_calib(),
        options={"opset": int, "slim": bool},
        fallback_order=("percentile", "entropy", "minmax"),  # outlier-robust methods first
    ),
)
register_ptq_backend(
    "tensorrt", PtqBackend(build_tensorrt, calib_methods=("max",), keep=False, available=tensorrt_reason)
)
