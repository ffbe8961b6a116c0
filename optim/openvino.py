"""OpenVINO producers: ``ov`` (FP32, or ``ov(bf16)``), and INT8 through NNCF: ``ptq(ov)`` / ``ov-int8``.

On an Intel Xeon with AMX, OpenVINO INT8 calibrated with NNCF was the fastest deployable variant of resnet50 (8.2 ms
at batch 1 against 79.5 ms eager FP32, 165 img/s at batch 16 against 12), ahead of PT2E x86 and ONNX Runtime INT8;
a harness that cannot measure it answers an Intel user a third too slow. ``ov`` converts the eager module (or, in
``onnx+ov``, the ONNX file of the export step); ``ptq(ov)`` quantizes the converted model with ``nncf.quantize`` on
the train split's calibration images, with NNCF's own options as step arguments. Its fallback when it misses the
accuracy budget is NNCF's ``quantize_with_accuracy_control``, which reverts the layers that cost the most accuracy,
judged on a held-out part of the train split (never on val).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import InputError, MissingDependencyError
from optim.artifact import Artifact, BuildContext
from optim.backends import ov_runtime
from optim.registry import MODULE, ONNX, RUNTIME, register_step
from optim.variant import Variant, register_loader

PRESETS = ("performance", "mixed")
OV_USAGE = "ov[(f32|bf16)]"
INT8_OPTIONS = {
    "preset": str,
    "model_type": str,
    "subset_size": int,
    "fast_bias_correction": bool,
    "ignore": str,
    "accuracy_control": bool,
}
INT8_USAGE = (
    "ptq(ov[,preset=performance|mixed][,model_type=transformer][,subset_size=N][,fast_bias_correction=1|0]"
    "[,ignore=PATTERN|PATTERN][,accuracy_control=1])"
)
VALIDATION_IMAGES = 128  # held-out train images quantize_with_accuracy_control judges layers on


def parse_ov_args(args: Sequence[str]) -> dict[str, Any]:
    """``ov``, ``ov(f32)``, ``ov(bf16)``."""
    if len(args) > 1 or (args and args[0] not in ov_runtime.PRECISIONS):
        raise InputError(f"ov takes one precision, {' or '.join(ov_runtime.PRECISIONS)}; got ({', '.join(args)})")
    return {"precision": args[0] if args else "f32"}


def parse_int8_args(values: dict[str, Any]) -> dict[str, Any]:
    """Check the NNCF options of ``ptq(ov,...)`` / ``ov-int8(...)``."""
    if values.get("preset") is not None and values["preset"] not in PRESETS:
        raise InputError(f"preset must be one of {', '.join(PRESETS)}, got {values['preset']!r}")
    if values.get("model_type") not in (None, "transformer"):
        raise InputError(f"model_type must be transformer (or left out), got {values['model_type']!r}")
    if values.get("subset_size") is not None and values["subset_size"] <= 0:
        raise InputError(f"subset_size must be positive, got {values['subset_size']}")
    return values


def _unavailable(device: str) -> str | None:
    return ov_runtime.missing_reason(device)


def _source(artifact: Artifact, step: str) -> Any:
    if artifact.kind == ONNX and artifact.onnx_path is not None:
        return Path(artifact.onnx_path)
    if artifact.module is None:
        raise InputError(f"{step} needs an eager module or an ONNX file")
    return artifact.module.float().cpu().eval()


def _runtime_artifact(model: Any, ctx: BuildContext, precision: str, steps: list, entry: dict) -> Artifact:
    runtime = ov_runtime.OvRuntime(model, precision, ctx.threads, _cache_dir())
    entry = {**entry, **runtime.describe()}
    if precision == "bf16" and runtime.precision != "bf16":
        entry["note"] = f"bf16 requested, OpenVINO runs {runtime.precision} on this CPU (no native BF16)"

    def save_hook(directory: Path) -> dict[str, Any]:
        files = ov_runtime.save(model, directory)
        return {"kind": "openvino", "xml": files[0], "bin": files[1], "precision": precision}

    predict, prepare = ov_runtime.runtime_functions(runtime)
    return Artifact(kind=RUNTIME, predict=predict, prepare_input=prepare, steps=[*steps, entry], save_hook=save_hook)


def _cache_dir() -> Path:
    """OpenVINO's compile cache lives with our caches, never in a variant directory (it is a compiled binary)."""
    from data.paths import cache_dir

    return cache_dir() / "openvino"


@register_step(
    "ov",
    accepts=[MODULE, ONNX],
    produces=RUNTIME,
    parse_args=parse_ov_args,
    devices=["cpu"],
    usage=OV_USAGE,
    description="OpenVINO CPU plugin, precision set explicitly (f32, or bf16 on AMX/avx512_bf16); LATENCY/THROUGHPUT",
    default_recipes={"cpu": ["ov", "ov(bf16)"]},
    available=_unavailable,
    needs=lambda args, device: ("x86_avx2", "native_bf16") if args.get("precision") == "bf16" else ("x86_avx2",),
    slow_hints=lambda args, device, flags: ["OpenVINO copies the batch between torch and numpy on every call"],
)
def ov_step(artifact: Artifact, ctx: BuildContext, precision: str = "f32") -> Artifact:
    """Convert and compile with OpenVINO; the model is kept as IR (XML + weights) when saved."""
    source = _source(artifact, "ov")
    model = ov_runtime.convert(source, ctx.loaded.info.input_size)
    entry = {"step": f"ov({precision})" if precision != "f32" else "ov", "converted_from": type(source).__name__}
    int8 = ov_runtime.int8_summary(model)
    if int8["fake_quantize_nodes"]:  # an ONNX file with quantize/dequantize pairs, e.g. qat(ort)+ov: INT8 in OpenVINO
        entry.update(int8, int8_from="the ONNX file's quantize/dequantize pairs")
    return _runtime_artifact(model, ctx, precision, artifact.steps, entry)


def build_ov_int8(artifact: Artifact, ctx: BuildContext, args: dict[str, Any]) -> Artifact:
    """NNCF post-training quantization of the converted model, calibrated on the train split's calibration subset."""
    parse_int8_args(args)
    try:
        import nncf
    except ImportError:
        raise MissingDependencyError(f"ptq(ov) needs NNCF: {ov_runtime.INSTALL_HINT}") from None
    source = _source(artifact, "ptq(ov)")
    model = ov_runtime.convert(source, ctx.loaded.info.input_size)
    calib = ctx.data.calib.dataset
    subset = min(len(calib), int(args.get("subset_size") or min(len(calib), 300)))
    kwargs: dict[str, Any] = {
        "subset_size": subset,
        "fast_bias_correction": bool(args.get("fast_bias_correction", True)),
    }
    if args.get("preset"):
        kwargs["preset"] = getattr(nncf.QuantizationPreset, args["preset"].upper())
    if args.get("model_type"):
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if args.get("ignore"):
        kwargs["ignored_scope"] = nncf.IgnoredScope(patterns=args["ignore"].split("|"), validate=False)
    dataset = nncf.Dataset(calib, lambda item: item[0][None].numpy())
    entry: dict[str, Any] = {
        "step": args.get("step_text", "ptq(ov)"),
        "calibration_images": subset,
        "nncf": {k: str(v) for k, v in kwargs.items()},
    }
    if args.get("accuracy_control"):
        quantized = _with_accuracy_control(nncf, model, dataset, ctx, kwargs)
        entry["accuracy_control"] = f"nncf.quantize_with_accuracy_control on {VALIDATION_IMAGES} held-out train images"
    else:
        quantized = nncf.quantize(model, dataset, **kwargs)
    entry.update(ov_runtime.int8_summary(quantized))
    return _runtime_artifact(quantized, ctx, "f32", artifact.steps, entry)


def _with_accuracy_control(nncf: Any, model: Any, dataset: Any, ctx: BuildContext, kwargs: dict[str, Any]) -> Any:
    """NNCF's own fallback: quantize, then revert the layers that cost the most top-1 on held-out train images."""
    import torch

    from data import calibration_subset

    train = ctx.data.train.dataset
    held_out = calibration_subset(train, VALIDATION_IMAGES, ctx.seed + 1)
    validation = nncf.Dataset(held_out, lambda item: item[0][None].numpy())

    def top1(compiled: Any, items: Any) -> float:
        output = compiled.output(0)
        hits = total = 0
        for image, label in items:
            logits = compiled(image[None].numpy())[output]
            hits += int(int(logits.argmax(1)[0]) == int(label))
            total += 1
        return hits / max(total, 1)

    max_drop = float(ctx.max_drop) / 100.0  # the run's --max-drop, in points; NNCF takes a fraction
    with torch.inference_mode():
        return nncf.quantize_with_accuracy_control(
            model, dataset, validation, top1, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, **kwargs
        )


def ov_fallbacks(recipe: Any) -> list[tuple[str, str]]:
    """When ptq(ov) misses the budget: the mixed preset (symmetric weights, asymmetric activations), then NNCF's
    accuracy control."""
    last = recipe.steps[-1]
    prefix = "+".join(str(s) for s in recipe.steps[:-1])

    def make(extra: str) -> str:
        step = f"ptq(ov,{extra})"
        return f"{prefix}+{step}" if prefix else step

    plan = []
    if last.args.get("preset") != "mixed":
        plan.append((make("preset=mixed"), "NNCF's mixed preset (asymmetric activations)"))
    if not last.args.get("accuracy_control"):
        plan.append((make("accuracy_control=1"), "NNCF's accuracy control: the most harmful layers back to FP32"))
    return plan


@register_loader("openvino")
def load_openvino(directory: Path, manifest: dict[str, Any], device: str, base=None) -> Variant:
    """The saved IR (plain XML graph and raw weights), compiled again with the harness's thread count."""
    from optim.backends.onnx_runtime import harness_threads
    from optim.safe_artifacts import artifact_file, check_recorded_digest

    if device != "cpu":
        raise InputError("an OpenVINO variant runs on the CPU only")
    spec = manifest["load"]
    xml = artifact_file(directory, spec.get("xml"), "OpenVINO graph")
    weights = artifact_file(directory, spec.get("bin"), "OpenVINO weights")
    for path in (xml, weights):
        check_recorded_digest(directory, manifest, path)
    if xml.with_suffix(".bin") != weights:
        raise InputError(f"{directory}: the OpenVINO weights must sit beside the graph as {xml.stem}.bin")
    runtime = ov_runtime.OvRuntime(ov_runtime.read(xml), spec.get("precision", "f32"), harness_threads(), _cache_dir())
    predict, prepare = ov_runtime.runtime_functions(runtime)
    return Variant(manifest["name"], manifest["recipe"], device, predict, manifest, prepare)


def _parse_ov_int8(args: Sequence[str]) -> dict[str, Any]:
    from optim.onnx import parse_key_values

    values = parse_int8_args(parse_key_values("ov-int8", args, INT8_OPTIONS))
    values["backend"] = "ov"
    values["step_text"] = f"ov-int8({','.join(args)})" if args else "ov-int8"
    return values


def _register() -> None:
    """``ptq(ov)`` is a backend of ``ptq``; ``ov-int8`` is its short name for chains such as ``prune(0.5)+ov-int8``."""
    from optim.int8 import int8_slow_hints
    from optim.ptq import PtqBackend, ptq_fallbacks, register_ptq_backend

    register_ptq_backend(
        "ov",
        PtqBackend(
            build_ov_int8,
            options=INT8_OPTIONS,
            keep=False,
            fallbacks=ov_fallbacks,
            available=_unavailable,
            check=parse_int8_args,
        ),
    )
    register_step(
        "ov-int8",
        accepts=[MODULE],
        produces=RUNTIME,
        parse_args=_parse_ov_int8,
        devices=["cpu"],
        usage="ov-int8[(preset=...,model_type=...,subset_size=N,...)]  (same as ptq(ov))",
        description="alias of ptq(ov): OpenVINO INT8 calibrated with NNCF, e.g. prune(0.5)+ov-int8",
        default_recipes={"cpu": ["prune(0.5)+ov-int8"]},
        available=_unavailable,
        fallbacks=ptq_fallbacks,
        slow_hints=int8_slow_hints,
        needs=lambda args, device: ("x86_avx2",),
    )(lambda artifact, ctx, **args: build_ov_int8(artifact, ctx, args))


_register()
