"""ONNX Runtime variants: the ``ort`` recipe step, the ONNX -> session finalizer, and ``python -m optim.onnx``.

``ort`` exports the module (dynamo exporter, TorchScript fallback), slims the graph, and refuses a file
that fails the parity check against eager. ``python -m optim.onnx CKPT --int8`` runs the ORT static INT8
path of :mod:`optim.quantize` (``ptq(ort)``) instead of a copy of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import InputError, run_cli
from optim.artifact import Artifact, BuildContext
from optim.backends.onnx_export import (
    DEFAULT_OPSET,
    ExportConfig,
    ParityConfig,
    check_opset,
    check_parity,
    export_onnx,
    parity_batches,
)
from optim.registry import MODULE, ONNX, register_step
from optim.variant import FINALIZERS, Variant, register_loader

ORT_COPY_HINT = "ONNX Runtime copies the batch between torch and numpy on every call, which dominates tiny inputs"

if __name__ == "__main__":
    # `python -m optim.onnx` runs this file as __main__; run the importable module instead so the recipe steps
    # register exactly once (load_producers imports optim.onnx again).
    from optim.onnx import main as _main

    run_cli(_main)

ONNX_FILE = "model.onnx"
QUICK_PARITY_IMAGES = 128


def parse_key_values(step: str, args: Sequence[str], known: dict[str, type]) -> dict[str, Any]:
    """``key=value`` recipe arguments typed by ``known``; bools accept 1/0/true/false/yes/no."""
    out: dict[str, Any] = {}
    for arg in args:
        key, sep, value = (s.strip() for s in arg.partition("="))
        if not sep:
            raise InputError(f"{step} arguments are key=value, got {arg!r}; known keys: {', '.join(known)}")
        if key not in known:
            raise InputError(f"unknown {step} argument {key!r}; known: {', '.join(known)}")
        if key in out:
            raise InputError(f"{step} argument {key!r} given twice")
        kind = known[key]
        if kind is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise InputError(f"{step} argument {key} must be 1 or 0, got {value!r}")
            out[key] = value.lower() in ("1", "true", "yes")
        else:
            try:
                out[key] = kind(value)
            except ValueError:
                raise InputError(f"{step} argument {key} must be {kind.__name__}, got {value!r}") from None
    return out


def parse_ort_args(args: Sequence[str]) -> dict[str, Any]:
    """``ort``, ``ort(opset=17)``, ``ort(opset=17,slim=0)``."""
    values = parse_key_values("ort", args, {"opset": int, "slim": bool})
    if "opset" in values:
        check_opset(values["opset"])
    values["step_text"] = f"ort({','.join(args)})" if args else "ort"
    return values


def parity_loader(ctx: BuildContext):
    """Validation images for the parity check when the model has real weights and data; else None."""
    if not ctx.loaded.info.has_weights or (ctx.data_factory is None and ctx._data is None):
        return None
    return ctx.data.val


def export_checked(
    module, ctx: BuildContext, cfg: ExportConfig, path: Path, parity: ParityConfig | None = None
) -> dict[str, Any]:
    """Export ``module`` to ``path`` and run the parity check on CPU; returns notes, raises ParityError.

    ``module`` is an eager module (cast to FP32) or a converted PT2E graph (left as is: its INT8 weights
    must not be cast); ``parity`` loosens the thresholds for INT8 graphs.
    """
    import torch

    from optim.backends.onnx_runtime import create_session

    if not isinstance(module, torch.fx.GraphModule):
        module = module.float().cpu().eval()
    example = ctx.example_input(2)
    notes = export_onnx(module, example, path, cfg)
    session = create_session(path, "cpu", ctx.threads)
    max_images = QUICK_PARITY_IMAGES if ctx.quick else (parity or ParityConfig()).max_images
    loader = parity_loader(ctx)
    batches = parity_batches(loader, ctx.example_input(8), max_images)
    output = session.get_outputs()[0].name
    parity_cfg = parity or ParityConfig()
    parity = check_parity(module, lambda x: session.run([output], {"input": x})[0], batches, parity_cfg)
    parity["data"] = "random" if loader is None else "val"
    notes["parity"] = parity
    return notes


def onnx_artifact(path: Path, steps: list[dict[str, Any]], extra_load: dict[str, Any] | None = None) -> Artifact:
    """An ONNX-file artifact that saves by copying the file and loads back through the ``onnx`` loader."""
    load_spec = {"kind": "onnx", "file": path.name, **(extra_load or {})}
    return Artifact(
        kind=ONNX,
        onnx_path=path,
        steps=steps,
        files={path.name: path},
        save_hook=lambda directory: dict(load_spec),
    )


def _ort_unavailable(device: str) -> str | None:
    """On cuda, ORT needs onnxruntime-gpu's CUDA EP; a sweep skips the recipe with this reason otherwise."""
    if device != "cuda":
        return None
    from optim.backends.onnx_runtime import cuda_unavailable_reason

    return cuda_unavailable_reason()


@register_step(
    "ort",
    accepts=[MODULE],
    produces=ONNX,
    parse_args=parse_ort_args,
    usage=f"ort[(opset=N,slim=1|0)]  (opset default {DEFAULT_OPSET})",
    description="export to ONNX (dynamo, TorchScript fallback), slim, parity-check vs eager; run with ONNX Runtime",
    default_recipes={"cpu": ["ort"], "cuda": ["ort"]},
    available=_ort_unavailable,
    slow_hints=lambda args, device, flags: [ORT_COPY_HINT] if device == "cpu" else [],
)
def ort_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """FP32 ONNX export checked against eager; the finalizer turns it into an ORT session."""
    step_text = args.pop("step_text", "ort")
    cfg = ExportConfig(opset=args.get("opset", DEFAULT_OPSET), slim=args.get("slim", True))
    if artifact.module is None:
        raise InputError("ort needs an eager module to export")
    path = ctx.workdir / ONNX_FILE
    notes = export_checked(artifact.module, ctx, cfg, path)
    steps = [*artifact.steps, {"step": step_text, "config": cfg.to_dict(), **notes}]
    return onnx_artifact(path, steps)


def finalize_onnx(artifact: Artifact, ctx: BuildContext) -> Artifact:
    """ONNX file -> ORT session on ``ctx.device`` with ``ctx.threads`` intra-op threads."""
    from optim.backends.onnx_runtime import create_session, session_runtime

    session = create_session(artifact.onnx_path, ctx.device, ctx.threads, ctx.workdir / "trt_cache")
    artifact.predict, artifact.prepare_input = session_runtime(session, ctx.device)
    artifact.module = None
    runtime = {"engine": "onnxruntime", "providers": list(session.get_providers()), "intra_op_threads": ctx.threads}
    if artifact.steps:
        artifact.steps[-1]["runtime"] = runtime
    else:
        artifact.steps.append({"step": "ort-runtime", "runtime": runtime})
    return artifact


FINALIZERS[ONNX] = finalize_onnx


@register_loader("onnx")
def load_onnx(directory: Path, manifest: dict[str, Any], device: str, base=None) -> Variant:
    """A saved ONNX variant: the file loads directly into a session with the harness's thread count."""
    from optim.backends.onnx_runtime import create_session, harness_threads, session_runtime
    from optim.safe_artifacts import artifact_file, check_onnx_external_data, check_recorded_digest

    spec = manifest["load"]
    path = artifact_file(directory, spec.get("file"), "ONNX file")
    check_recorded_digest(directory, manifest, path)
    check_onnx_external_data(path)
    session = create_session(path, device, harness_threads(), directory / "trt_cache")
    predict, prepare = session_runtime(session, device)
    return Variant(manifest["name"], manifest["recipe"], device, predict, manifest, prepare)


def build_parser():
    from data.errors import ArgumentParser
    from optim.accuracy_budget import add_budget_arguments
    from optim.cli import add_producer_arguments

    p = ArgumentParser(prog="python -m optim.onnx", description="Export to ONNX, check parity, run with ONNX Runtime.")
    add_producer_arguments(p)
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--slim", action="store_true", default=True, help="slim the graph with onnxslim (default)")
    p.add_argument("--no-slim", dest="slim", action="store_false", help="keep the exporter's graph as is")
    p.add_argument("--int8", action="store_true", help="static INT8 QDQ (U8 activations, S8 weights): ptq(ort)")
    p.add_argument("--calib", default="minmax", help="with --int8: minmax (default) | entropy | percentile")
    add_budget_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from optim.accuracy_budget import run_with_budget
    from optim.backends.ort_quant import CALIB_METHODS

    args = build_parser().parse_args(argv)
    check_opset(args.opset)
    extra = [] if args.opset == DEFAULT_OPSET else [f"opset={args.opset}"]
    if not args.slim:
        extra.append("slim=0")
    if args.int8:
        if args.calib not in CALIB_METHODS:
            raise InputError(f"--calib must be one of {', '.join(CALIB_METHODS)}, got {args.calib!r}")
        recipe = "ptq(" + ",".join(["ort", *([] if args.calib == "minmax" else [f"calib={args.calib}"]), *extra]) + ")"
    else:
        recipe = f"ort({','.join(extra)})" if extra else "ort"
    return run_with_budget(recipe, args, prog="optim.onnx", fallbacks=args.int8)
