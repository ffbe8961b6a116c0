"""Static INT8 post-training quantization: ``ptq(BACKEND,...)``, and its backends' short names (``ort-int8``).

Backends register themselves (:func:`register_ptq_backend`): PT2E with the X86InductorQuantizer (``x86``), ONNX
Runtime QDQ (``ort``) and TensorRT through ModelOpt (``tensorrt``) here, OpenVINO through NNCF (``ov``) in
:mod:`optim.openvino`. Each declares its arguments, calibration methods, default recipes, the hardware it needs,
whether loading its variant compiles again and what to try when it misses the accuracy budget, so a new INT8
backend is one registration in its own module: ``ptq`` itself, the sweep, the search and the producer commands
do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from data.errors import InputError
from optim.args import Arg, parse_values
from optim.artifact import Artifact, BuildContext
from optim.int8 import calib_batches, eager_module, int8_slow_hints, keep_modules, parse_keep, x86_artifact
from optim.registry import MODULE, RUNTIME, register_step

SENSITIVE_STEPS = (1, 2, 4, 8)  # fallbacks keep this many of the most sensitive layers in FP32, in turn
GPU_INSTALL_HINT = "on an NVIDIA GPU machine: pip install .[gpu] or build Dockerfile.cuda"
KEEP = Arg(
    "keep", help="layers left in FP32: ends (first conv + classifier), N most sensitive, or ends+N", check=parse_keep
)


@dataclass(frozen=True)
class PtqBackend:
    """One INT8 backend of ``ptq``: how it builds, its arguments, and what the rest of the code asks about it."""

    build: Callable[[Artifact, BuildContext, dict[str, Any]], Artifact]
    description: str
    calib_methods: tuple[str, ...] = ()  # the first is the default; fallbacks try the others in ``fallback_order``
    args: tuple[Arg, ...] = ()  # its own arguments besides calib and keep
    keep: bool = True  # supports keep=ends|N|ends+N (layers left in FP32)
    reload_compiles: bool = False
    fallback_order: tuple[str, ...] = ()
    fallbacks: Callable[[Any], list[tuple[str, str]]] | None = None  # replaces the calibration/keep plan
    available: Callable[[str], str | None] | None = None  # device -> why it cannot run here, or None
    default_on: tuple[str, ...] = ()  # devices where a bare ``ptq`` uses this backend
    default_recipes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # device -> recipes in the sweep
    needs: tuple[str, ...] = ()  # machine capabilities it needs to be measured by default
    cpu_hints: tuple[str, ...] = ()  # why it may be slower than FP32 on a CPU, besides what every INT8 backend has


PTQ_BACKENDS: dict[str, PtqBackend] = {}


def register_ptq_backend(name: str, backend: PtqBackend) -> None:
    PTQ_BACKENDS[name] = backend


def default_backend(device: str) -> str:
    """The backend a bare ``ptq`` uses on ``device``: the one that declares itself the default there."""
    return next((n for n, b in PTQ_BACKENDS.items() if device in b.default_on), next(iter(PTQ_BACKENDS)))


def _backend(args: dict[str, Any], device: str) -> PtqBackend:
    return PTQ_BACKENDS[args.get("backend") or default_backend(device)]


def ptq_args(name: str | None, with_backend: bool = True, options: bool = True) -> tuple[Arg, ...]:
    """``ptq``'s arguments with backend ``name`` (None: every backend's, as ``ptq(calib=...)`` may take them);
    ``options``: the backends' own arguments too, besides calib and keep."""
    chosen = [PTQ_BACKENDS[name]] if name else list(PTQ_BACKENDS.values())
    calib = tuple(dict.fromkeys(m for b in chosen for m in b.calib_methods))
    out = [Arg("backend", help="INT8 backend", default=default_backend, choices=tuple(PTQ_BACKENDS), positional=True)]
    out = out if with_backend else []
    if calib:
        out.append(Arg("calib", help="calibration method (the backend's first is its default)", choices=calib))
    if any(b.keep for b in chosen):
        out.append(KEEP)
    for arg in (a for b in chosen for a in b.args if options):
        if arg.name not in {a.name for a in out}:
            out.append(arg)
    return tuple(out)


def parse_ptq(step: str, raw: Sequence[str], fixed: str | None = None) -> dict[str, Any]:
    """``ptq(x86)``, ``ptq(ort,calib=entropy,keep=ends+2)``, ``ptq(ov,preset=mixed)``; ``fixed``: an alias's."""
    values = parse_values(step, raw, ptq_args(fixed, with_backend=fixed is None))
    name = fixed or values.get("backend")
    if name and not fixed:
        values = parse_values(step, raw, ptq_args(name))  # the options of this backend only
    return {**values, "backend": name}


def fallback_recipe(recipe: Any, **changes: str | None) -> str:
    """``recipe`` with its last step written as ``ptq`` of the same backend, ``changes`` replacing those arguments
    (None: left out) and every other argument kept as the recipe wrote it."""
    last = recipe.steps[-1]
    kept = [a for a in last.raw_args if "=" in a and a.partition("=")[0].strip() not in changes]
    parts = [last.args.get("backend") or default_backend("cpu"), *kept]
    step = f"ptq({','.join(parts + [f'{k}={v}' for k, v in changes.items() if v is not None])})"
    return "+".join([*(str(s) for s in recipe.steps[:-1]), step])


def ptq_fallbacks(recipe: Any) -> list[tuple[str, str]]:
    """(recipe, why) to try in order when a recipe ending in ``ptq`` or an alias misses the accuracy budget: the
    backend's own plan, else the other calibration methods, then first conv + classifier in FP32, then the most
    sensitive layers too."""
    last = recipe.steps[-1]
    backend = PTQ_BACKENDS[last.args.get("backend") or default_backend("cpu")]
    if backend.fallbacks is not None:
        return backend.fallbacks(recipe)
    if not backend.calib_methods:
        return []
    default = backend.calib_methods[0]
    calib = last.args.get("calib") or default

    def make(calib_value: str, keep: str | None) -> str:
        return fallback_recipe(recipe, calib=calib_value if calib_value != default else None, keep=keep)

    order = backend.fallback_order or backend.calib_methods
    plan = [(make(c, None), f"calibration method {c} instead of {calib}") for c in order if c != calib]
    if backend.keep:
        plan.append((make(calib, "ends"), "first conv and classifier kept in FP32"))
        for n in SENSITIVE_STEPS:
            plan.append((make(calib, f"ends+{n}"), f"first conv, classifier and the {n} most sensitive layers in FP32"))
    return plan


def _available(args: dict[str, Any], device: str) -> str | None:
    backend = _backend(args, device)
    return backend.available(device) if backend.available is not None else None


def _details() -> list[str]:
    """The backends and their arguments, for ``python -m optim list ptq``."""
    bare = ", ".join(f"{default_backend(d)} on {d}" for d in ("cpu", "cuda"))
    lines = [f"backends (a bare ptq uses {bare}):"]
    for name, backend in PTQ_BACKENDS.items():
        lines.append(f"  {name}: {backend.description}")
        lines += [f"      {arg.describe()}" for arg in ptq_args(name, with_backend=False)]
    return lines


# Every declaration of ptq and of its aliases is its backend's.
_FROM_BACKEND: dict[str, Any] = {
    "available": _available,
    "fallbacks": ptq_fallbacks,
    "reload_compiles": lambda args, device: _backend(args, device).reload_compiles,
    "needs": lambda args, device: _backend(args, device).needs,
    "slow_hints": lambda args, device, flags: (
        int8_slow_hints(device, flags) + (list(_backend(args, device).cpu_hints) if device == "cpu" else [])
    ),
    "calibrates": True,
    "search_candidate": True,
    "compresses": True,
}


def _ptq_defaults() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for backend in PTQ_BACKENDS.values():
        for device, recipes in backend.default_recipes.items():
            out.setdefault(device, []).extend(recipes)
    return out


@register_step(
    "ptq",
    accepts=[MODULE],
    produces=RUNTIME,
    args=lambda: ptq_args(None, options=False),  # each backend's own options: python -m optim list ptq
    parse_args=lambda raw: parse_ptq("ptq", raw),
    description="static INT8 post-training quantization calibrated on train images, by the backend named first",
    default_recipes=_ptq_defaults,
    quantize_method=True,
    details=_details,
    **_FROM_BACKEND,
)
def ptq_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """Dispatch on the backend; ``ptq`` without one picks the machine's default (see :func:`default_backend`)."""
    args["backend"] = args.get("backend") or default_backend(ctx.device)
    return PTQ_BACKENDS[args["backend"]].build(artifact, ctx, args)


def register_ptq_alias(
    alias: str, backend: str, default_recipes: dict[str, Sequence[str]], devices: Sequence[str] = ("cpu", "cuda")
) -> None:
    """``alias`` is ``ptq(backend,...)`` under a short name, for chains such as ``prune(0.5)+ort-int8``."""
    spec = PTQ_BACKENDS[backend]
    register_step(
        alias,
        accepts=[MODULE],
        produces=RUNTIME,
        args=lambda: ptq_args(backend, with_backend=False),
        parse_args=lambda raw: parse_ptq(alias, raw, backend),
        devices=devices,
        description=f"alias of ptq({backend}): {spec.description}, e.g. prune(0.5)+{alias}",
        default_recipes=default_recipes,
        **_FROM_BACKEND,
    )(lambda artifact, ctx, **args: spec.build(artifact, ctx, args))


# ---------------------------------------------------------------- the backends defined here


def build_x86(artifact: Artifact, ctx: BuildContext, args: dict[str, Any]) -> Artifact:
    from optim.backends.pt2e import ptq_x86

    if ctx.device != "cpu":
        raise InputError("ptq(x86) runs on CPU only; use ptq(tensorrt) on cuda")
    module = eager_module(artifact, "ptq(x86)")
    names, keep_notes = keep_modules(module, ctx, args.get("keep"))
    graph, notes = ptq_x86(module, ctx.example_input(2), calib_batches(ctx), args.get("calib") or "histogram", names)
    entry = {"config": dict(args), **notes, **keep_notes}
    return x86_artifact(graph, ctx, artifact.steps, entry, args.get("wrapper") or "auto")


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

    return trt_step(artifact, ctx, precision="int8")


def _ort_reason(device: str) -> str | None:
    from optim.backends.onnx_runtime import missing_reason

    return missing_reason(device)


def _register_backends() -> None:
    from optim.backends.ort_quant import CALIB_METHODS
    from optim.backends.pt2e import WRAPPERS, X86_CALIB
    from optim.onnx import ORT_ARGS, ORT_COPY_HINT, build_ort_int8

    wrapper = Arg(
        "wrapper",
        default="auto",
        help="Inductor's C++ wrapper, its Python one, or auto: C++ at batch 1, Python for larger batches",
        choices=tuple(WRAPPERS),
    )
    register_ptq_backend(
        "x86",
        PtqBackend(
            build_x86,
            "PT2E with torchao's X86InductorQuantizer, compiled by Inductor with freezing",
            calib_methods=X86_CALIB,
            args=(wrapper,),
            reload_compiles=True,
            default_recipes={"cpu": ("ptq(x86)",)},
        ),
    )
    register_ptq_backend(
        "ort",
        PtqBackend(
            build_ort_int8,
            "ONNX export + ONNX Runtime static INT8 QDQ (U8 activations, S8 per-channel weights)",
            calib_methods=CALIB_METHODS,
            args=ORT_ARGS,
            fallback_order=("percentile", "entropy", "minmax"),  # outlier-robust methods first
            available=_ort_reason,
            # On small inputs a compiled graph's per-call overhead dominates and ORT's kernels win; ptq(x86) wins on
            # larger models, so the sweep measures both.
            default_on=("cpu",),
            default_recipes={"cpu": ("ptq(ort)",)},
            cpu_hints=(ORT_COPY_HINT,),
        ),
    )
    register_ptq_backend(
        "tensorrt",
        PtqBackend(
            build_tensorrt,
            "TensorRT engine calibrated with NVIDIA Model Optimizer (the sweep runs it as trt(int8))",
            calib_methods=("max",),
            keep=False,
            available=tensorrt_reason,
            default_on=("cuda",),
        ),
    )
    register_ptq_alias("ort-int8", "ort", {"cpu": ["prune(0.5)+ort-int8"]})


_register_backends()
