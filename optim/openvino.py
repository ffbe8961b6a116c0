"""OpenVINO producers: ``ov`` (FP32, or ``ov(bf16)``), and INT8 through NNCF: ``ptq(ov)`` / ``ov-int8``.

OpenVINO INT8 calibrated with NNCF can be the fastest deployable variant on Intel CPUs with VNNI or AMX, ahead of
PT2E x86 and ONNX Runtime INT8, so a harness that cannot measure it would answer those users too slow. ``ov``
converts the eager module (or, in ``onnx+ov``, the ONNX file of the export step); ``ptq(ov)`` quantizes the
converted model with ``nncf.quantize`` on the train split's calibration images, with NNCF's own options as step
arguments. Its fallback when it misses the accuracy budget is NNCF's ``quantize_with_accuracy_control``, which
reverts the layers that cost the most accuracy, judged on a held-out part of the train split (never on val), within
the run's ``--max-drop``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from data.errors import InputError, require
from optim.artifact import Artifact, BuildContext
from optim.backends import ov_runtime
from optim.ptq import PtqBackend, fallback_recipe, register_ptq_alias, register_ptq_backend
from optim.registry import MODULE, ONNX, RUNTIME, Arg, register_step
from optim.variant import Variant, register_loader

VALIDATION_IMAGES = 128  # held-out train images quantize_with_accuracy_control judges layers on
INT8_ARGS = (
    Arg(
        "preset", help="NNCF preset; mixed: symmetric weights, asymmetric activations", choices=("performance", "mixed")
    ),
    Arg(
        "model_type",
        help="NNCF's model type (transformer: keeps attention in floating point)",
        choices=("transformer",),
    ),
    Arg("subset_size", int, help="calibration images NNCF uses (default: up to 300 of the split)", positive=True),
    Arg("fast_bias_correction", bool, True, "NNCF's fast bias correction (0: the slower, exact one)"),
    Arg("ignore", help="layers left in FP32: NNCF name patterns separated by |"),
    Arg("accuracy_control", bool, False, "NNCF reverts the most harmful layers to FP32, within --max-drop"),
)


def _unavailable(args: dict[str, Any], device: str) -> str | None:
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
    args=(Arg("precision", default="f32", help="inference precision", choices=("f32", "bf16"), positional=True),),
    devices=["cpu"],
    description="OpenVINO CPU plugin, precision set explicitly (f32, or bf16 on AMX/avx512_bf16); LATENCY/THROUGHPUT",
    default_recipes={"cpu": ["ov", "ov(bf16)"]},
    available=_unavailable,
    needs=lambda args, device: ("x86_avx2", "native_bf16") if args.get("precision") == "bf16" else ("x86_avx2",),
    slow_hints=["OpenVINO copies the batch between torch and numpy on every call"],
    search_candidate=lambda args: args.get("precision") == "bf16",
)
def ov_step(artifact: Artifact, ctx: BuildContext, precision: str = "f32") -> Artifact:
    """Convert and compile with OpenVINO; the model is kept as IR (XML + weights) when saved."""
    source = _source(artifact, "ov")
    model = ov_runtime.convert(source, ctx.loaded.info.input_size)
    entry = {"config": {"precision": precision}, "converted_from": type(source).__name__}
    int8 = ov_runtime.int8_summary(model)
    if int8["fake_quantize_nodes"]:  # an ONNX file with quantize/dequantize pairs, e.g. qat(ort)+ov: INT8 in OpenVINO
        entry.update(int8, int8_from="the ONNX file's quantize/dequantize pairs")
    return _runtime_artifact(model, ctx, precision, artifact.steps, entry)


def build_ov_int8(artifact: Artifact, ctx: BuildContext, args: dict[str, Any]) -> Artifact:
    """NNCF post-training quantization of the converted model, calibrated on the train split's calibration subset."""
    nncf = require("nncf", ov_runtime.INSTALL_HINT)
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
        "calibration_images": subset,
        "nncf": {k: str(v) for k, v in kwargs.items()},
    }
    if args.get("accuracy_control"):
        quantized = _with_accuracy_control(nncf, model, dataset, ctx, kwargs)
        entry["accuracy_control"] = f"nncf.quantize_with_accuracy_control on {VALIDATION_IMAGES} held-out train images"
    else:
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: a user's stdout holds our report only
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
    with torch.inference_mode(), contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize_with_accuracy_control(
            model, dataset, validation, top1, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, **kwargs
        )


def ov_fallbacks(recipe: Any) -> list[tuple[str, str]]:
    """When ptq(ov) misses the budget: the mixed preset (symmetric weights, asymmetric activations), then NNCF's
    accuracy control."""
    last = recipe.steps[-1]
    plan = []
    if last.args.get("preset") != "mixed":
        plan.append((fallback_recipe(recipe, preset="mixed"), "NNCF's mixed preset (asymmetric activations)"))
    if not last.args.get("accuracy_control"):
        why = "NNCF's accuracy control: the most harmful layers back to FP32"
        plan.append((fallback_recipe(recipe, accuracy_control="1"), why))
    return plan


@register_loader("openvino", standalone=True)
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


register_ptq_backend(
    "ov",
    PtqBackend(
        build_ov_int8,
        "OpenVINO INT8 calibrated with NNCF (x86-64 CPUs)",
        args=INT8_ARGS,
        keep=False,
        fallbacks=ov_fallbacks,
        available=ov_runtime.missing_reason,
        default_recipes={"cpu": ("ptq(ov)",)},
        needs=("x86_avx2",),
    ),
)
register_ptq_alias("ov-int8", "ov", {"cpu": ["prune(0.5)+ov-int8"]}, devices=["cpu"])
