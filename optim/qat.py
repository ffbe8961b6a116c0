"""``qat(x86|ort)``: PT2E quantization-aware fine-tuning on the train split, then the x86 Inductor graph or ORT QDQ.

``qat(ort)`` makes an ONNX file with the learned quantize/dequantize pairs, so it can end a chain in ONNX Runtime or
go on to OpenVINO (``qat(ort)+ov``), which reads those pairs as its own INT8 (FakeQuantize) layers. Not in the
default sweep: it fine-tunes, which costs minutes where the other steps take seconds. The fake-quantized model is
trained with the same loop as ``python -m models.train``; ``--quick`` caps it at a few steps.
"""

from __future__ import annotations

from typing import Any

from data.errors import InputError
from optim.artifact import Artifact, BuildContext
from optim.backends.onnx_export import DEFAULT_OPSET, ExportConfig, ParityConfig, check_opset
from optim.int8 import eager_module, x86_artifact
from optim.onnx import export_checked, onnx_artifact
from optim.registry import MODULE, ONNX, RUNTIME, Arg, register_step

DEFAULT_QAT_EPOCHS = 1
QAT_LR = 1e-4  # fine-tuning an already trained model: a tenth of the from-scratch rate
QUICK_QAT_STEPS = 8
# INT8 vs its own PT2E simulation: integer kernels round differently, so only near-ties may flip.
INT8_PARITY = ParityConfig(atol=0.5, rtol=0.1, min_cosine=0.99, min_agreement=97.0)
QAT_ARGS = (
    Arg(
        "backend",
        default="ort",
        help="x86: Inductor graph; ort: ONNX QDQ file",
        choices=("x86", "ort"),
        positional=True,
    ),
    Arg("epochs", int, DEFAULT_QAT_EPOCHS, "fine-tuning epochs on the train split", positive=True),
    Arg("lr", float, QAT_LR, "fine-tuning learning rate", positive=True),
    Arg("opset", int, DEFAULT_OPSET, "ONNX opset of the ort export", check=check_opset),
)


def _backend(args: dict[str, Any]) -> str:
    return args.get("backend") or QAT_ARGS[0].default


def _unavailable(args: dict[str, Any], device: str) -> str | None:
    from optim.backends.onnx_runtime import missing_reason

    return missing_reason(device) if _backend(args) == "ort" else None


@register_step(
    "qat",
    accepts=[MODULE],
    produces=RUNTIME,
    produces_for=lambda args: ONNX if _backend(args) == "ort" else RUNTIME,
    args=QAT_ARGS,
    devices=["cpu"],
    description="PT2E quantization-aware fine-tuning on train, then x86 Inductor or ORT QDQ",
    reload_compiles=lambda args, device: _backend(args) == "x86",
    available=_unavailable,
    calibrates="QAT: ranges learned",
    search_candidate=True,
    compresses=True,
    quantize_method=True,
)
def qat_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """Fake-quantized fine-tuning with the models.train loop."""
    from models.train import TrainConfig, train
    from optim.backends.pt2e import qat_convert, qat_prepare

    backend = _backend(args)
    if ctx.device != "cpu":
        raise InputError("qat runs on CPU here (x86 or ort backends)")
    module = eager_module(artifact, "qat")
    cfg = TrainConfig(
        epochs=1 if ctx.quick else args.get("epochs") or DEFAULT_QAT_EPOCHS,
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
        "config": {**args, "backend": backend},
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
