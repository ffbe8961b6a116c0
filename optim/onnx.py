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
from optim.args import add_options, arg_texts, step_text, values_of
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
from optim.int8 import calib_batches, eager_module, keep_modules, keep_plan, module_digest
from optim.registry import MODULE, ONNX, Arg, register_step
from optim.variant import FINALIZERS, Variant, register_loader

ORT_COPY_HINT = "ONNX Runtime copies the batch between torch and numpy on every call, which dominates tiny inputs"

if __name__ == "__main__":
    # `python -m optim.onnx` runs this file as __main__; run the importable module instead so the recipe steps
    # register exactly once (load_producers imports optim.onnx again).
    from optim.onnx import main as _main

    run_cli(_main)

ONNX_FILE = "model.onnx"
QUICK_PARITY_IMAGES = 128


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


def _ort_unavailable(args: dict[str, Any], device: str) -> str | None:
    from optim.backends.onnx_runtime import missing_reason

    return missing_reason(device)


ORT_ARGS = (
    Arg("opset", int, DEFAULT_OPSET, "ONNX opset of the export", check=check_opset),
    Arg("slim", bool, True, "simplify the exported graph with onnxslim"),
)


@register_step(
    "ort",
    accepts=[MODULE],
    produces=ONNX,
    args=ORT_ARGS,
    description="export to ONNX (dynamo, TorchScript fallback), slim, parity-check vs eager; run with ONNX Runtime",
    default_recipes={"cpu": ["ort"], "cuda": ["ort"]},
    available=_ort_unavailable,
    slow_hints=lambda args, device, flags: [ORT_COPY_HINT] if device == "cpu" else [],
)
def ort_step(artifact: Artifact, ctx: BuildContext, opset: int = DEFAULT_OPSET, slim: bool = True) -> Artifact:
    """FP32 ONNX export checked against eager; the finalizer turns it into an ORT session."""
    cfg = ExportConfig(opset=opset, slim=slim)
    if artifact.module is None:
        raise InputError("ort needs an eager module to export")
    path = ctx.workdir / ONNX_FILE
    notes = export_checked(artifact.module, ctx, cfg, path)
    return onnx_artifact(path, [*artifact.steps, {"config": cfg.to_dict(), **notes}])


def _cached_fp32_onnx(module, ctx: BuildContext, cfg: ExportConfig) -> tuple[Path, dict[str, Any]]:
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
    """Export (parity-checked), pre-process, calibrate, write QDQ: the ``ort`` backend of ``ptq`` (optim.ptq)."""
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
    return onnx_artifact(out, [*artifact.steps, {"config": dict(args), **notes}])


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


@register_loader("onnx", standalone=True)
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
    from optim.backends.ort_quant import CALIB_METHODS
    from optim.cli import add_producer_arguments

    p = ArgumentParser(prog="python -m optim.onnx", description="Export to ONNX, check parity, run with ONNX Runtime.")
    add_producer_arguments(p)
    add_options(p, ORT_ARGS)
    p.add_argument("--int8", action="store_true", help="static INT8 QDQ (U8 activations, S8 weights): ptq(ort)")
    p.add_argument("--calib", default=CALIB_METHODS[0], help=f"with --int8: {' | '.join(CALIB_METHODS)}")
    add_budget_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from optim.accuracy_budget import run_with_budget
    from optim.backends.ort_quant import CALIB_METHODS

    args = build_parser().parse_args(argv)
    check_opset(args.opset)
    extra = arg_texts(ORT_ARGS, values_of(args, ORT_ARGS))
    if args.int8:
        if args.calib not in CALIB_METHODS:
            raise InputError(f"--calib must be one of {', '.join(CALIB_METHODS)}, got {args.calib!r}")
        calib = [] if args.calib == CALIB_METHODS[0] else [f"calib={args.calib}"]
        recipe = "ptq(" + ",".join(["ort", *calib, *extra]) + ")"
    else:
        recipe = step_text("ort", ORT_ARGS, values_of(args, ORT_ARGS))
    return run_with_budget(recipe, args, prog="optim.onnx")
