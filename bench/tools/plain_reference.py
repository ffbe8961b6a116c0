"""Benchmark of our recipes against a plain script of the same technique: ``python -m bench.tools.plain_reference``.

A recipe is only worth its machinery if it is at least as fast as what a user would write in twenty lines from the
library's own documentation. Each technique here is that script: one process, the model built in it, the technique
applied the way its documentation shows, then timed the simplest way (back-to-back calls, ``time.perf_counter``,
median at batch 1, mean images per second at the throughput batch). Compare its figures with the sweep's rows of
the same recipe on the same machine, never beside another measurement (docs/measurement.md, "Our recipes beside
plain scripts", has the figures and where they differ).

Techniques and the recipe each stands beside:

- ``fp32``: eager PyTorch under ``torch.no_grad`` (``fp32``);
- ``ptq-x86``: PT2E with ``X86InductorQuantizer``, one static graph per batch size, 32 calibration images,
  ``torch.compile`` under Inductor freezing, Inductor's default Python wrapper (``ptq(x86)``);
- ``compile-bf16``: ``torch.compile`` of a ``torch.autocast(bfloat16)`` forward under freezing (``compile(bf16)``);
- ``ptq-ov``: ``openvino.convert_model``, ``nncf.quantize`` on 32 images, compiled with the plugin's defaults and
  f32 inference precision, one static shape per batch size (``ptq(ov)``);
- ``ptq-ort``: ONNX export, ``quantize_static`` QDQ with uint8 activations and int8 per-channel weights on 32
  images, ``ORT_ENABLE_ALL`` (``ptq(ort)``).

Random weights and random inputs, as in a ``--random-init`` sweep: the figures are speed only.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from data.errors import ArgumentParser, InputError, run_cli

Predict = Callable[[torch.Tensor], object]
CALIBRATION_IMAGES = 32


def _images(count: int, size: int, batch: int) -> list[torch.Tensor]:
    return [torch.randn(batch, 3, size, size) for _ in range(max(1, count // batch))]


def eager(model: torch.nn.Module, size: int, batches: Sequence[int], threads: int) -> dict[int, Predict]:
    def run(x):
        with torch.no_grad():
            return model(x)

    return dict.fromkeys(batches, run)


def ptq_x86(model: torch.nn.Module, size: int, batches: Sequence[int], threads: int) -> dict[int, Predict]:
    import torch._inductor.config as inductor_config
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    out = {}
    for batch in batches:
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        with torch.no_grad():
            graph = torch.export.export(model, (torch.randn(batch, 3, size, size),)).module()
            prepared = prepare_pt2e(graph, quantizer)
            for x in _images(CALIBRATION_IMAGES, size, batch):
                prepared(x)
            with inductor_config.patch(freezing=True):
                compiled = torch.compile(convert_pt2e(prepared))
                compiled(torch.randn(batch, 3, size, size))

        def run(x, compiled=compiled):
            with torch.no_grad(), inductor_config.patch(freezing=True):
                return compiled(x)

        out[batch] = run
    return out


def compile_bf16(model: torch.nn.Module, size: int, batches: Sequence[int], threads: int) -> dict[int, Predict]:
    import torch._inductor.config as inductor_config

    def forward(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    compiled = torch.compile(forward)

    def run(x):
        with torch.no_grad(), inductor_config.patch(freezing=True):
            return compiled(x)

    for batch in batches:
        run(torch.randn(batch, 3, size, size))
    return dict.fromkeys(batches, run)


def ptq_ov(model: torch.nn.Module, size: int, batches: Sequence[int], threads: int) -> dict[int, Predict]:
    import nncf
    import openvino as ov

    core = ov.Core()
    out = {}
    for batch in batches:
        converted = ov.convert_model(model, example_input=torch.randn(batch, 3, size, size))
        converted.reshape([batch, 3, size, size])
        calibration = nncf.Dataset([x.numpy() for x in _images(CALIBRATION_IMAGES, size, batch)])
        quantized = nncf.quantize(converted, calibration)
        config = {"INFERENCE_NUM_THREADS": str(threads), "INFERENCE_PRECISION_HINT": "f32"}
        compiled = core.compile_model(quantized, "CPU", config)
        out[batch] = lambda x, compiled=compiled: compiled(x.numpy())[0]
    return out


def ptq_ort(model: torch.nn.Module, size: int, batches: Sequence[int], threads: int) -> dict[int, Predict]:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    folder = Path(tempfile.mkdtemp(prefix="plain-ort-"))
    fp32, int8 = folder / "model.onnx", folder / "model-int8.onnx"
    batch_dim = torch.export.Dim("batch", min=1, max=1024)
    example = torch.randn(2, 3, size, size)
    torch.onnx.export(
        model, (example,), str(fp32), input_names=["input"], dynamic_shapes=({0: batch_dim},), dynamo=True
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(_images(CALIBRATION_IMAGES, size, 1))

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"input": x.numpy()}

    quantize_static(
        str(fp32),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    runtime = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    return dict.fromkeys(batches, lambda x: runtime.run(None, {"input": x.numpy()})[0])


TECHNIQUES: dict[str, Callable[..., dict[int, Predict]]] = {
    "fp32": eager,
    "ptq-x86": ptq_x86,
    "compile-bf16": compile_bf16,
    "ptq-ov": ptq_ov,
    "ptq-ort": ptq_ort,
}


def time_calls(run: Predict, x: torch.Tensor, calls: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return times


def measure(technique: str, model_name: str, size: int, batch: int, threads: int, calls: int) -> dict:
    import timm

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    try:
        model = timm.create_model(model_name, pretrained=False, num_classes=1000).eval()
    except RuntimeError as exc:
        raise InputError(f"timm cannot build {model_name!r}: {exc}") from None
    start = time.perf_counter()
    runs = TECHNIQUES[technique](model, size, (1, batch), threads)
    build_s = time.perf_counter() - start
    single = time_calls(runs[1], torch.randn(1, 3, size, size), calls, max(1, calls // 20))
    batched = time_calls(runs[batch], torch.randn(batch, 3, size, size), max(3, calls // 10), 2)
    return {
        "technique": technique,
        "model": model_name,
        "img_size": size,
        "threads": threads,
        "build_s": round(build_s, 1),
        "batch1_p50_ms": round(statistics.median(single) * 1e3, 3),
        "throughput_batch": batch,
        "throughput_img_s": round(batch * len(batched) / float(np.sum(batched)), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m bench.tools.plain_reference", description=__doc__.splitlines()[0])
    parser.add_argument("techniques", nargs="+", help=f"one or more of: {', '.join(TECHNIQUES)}")
    parser.add_argument("--model", default="resnet50", help="timm architecture, random weights (default resnet50)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16, help="throughput batch size (default 16, as the sweep)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200, help="batch-1 calls timed (a tenth of it at the batch)")
    args = parser.parse_args(argv)
    if unknown := [t for t in args.techniques if t not in TECHNIQUES]:
        raise InputError(f"unknown technique {unknown[0]!r}; choose from: {', '.join(TECHNIQUES)}")
    failed = 0
    for technique in args.techniques:
        try:
            out = measure(technique, args.model, args.img_size, args.batch, args.threads, args.calls)
        except InputError:
            raise
        except Exception as exc:  # the library's own failure on this model: the technique's row says it
            failed += 1
            why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            out = {"technique": technique, "model": args.model, "error": why}
        print(json.dumps(out), flush=True)
    return 1 if failed == len(args.techniques) else 0


if __name__ == "__main__":
    run_cli(main)
