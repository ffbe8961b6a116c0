"""OpenVINO on the CPU: convert, compile with explicit settings, call, save, load.

Settings are always explicit, because OpenVINO's defaults depend on the machine: on a CPU with AMX or avx512_bf16
the CPU plugin runs BF16 unless ``INFERENCE_PRECISION_HINT`` says f32, so an "FP32" variant would silently be a
BF16 one. On a CPU without native BF16 a bf16 request silently runs f32; the precision is therefore read back from
the compiled model and recorded. Batch-1 calls use the ``LATENCY`` hint; larger batches use ``THROUGHPUT`` and are
split over the streams it creates (asynchronous requests run side by side), which is how OpenVINO serves
throughput: one synchronous request would use one stream's threads only. Both use the run's thread count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.errors import missing, require

INSTALL_HINT = "pip install openvino nncf"


def require_openvino():
    return require("openvino", INSTALL_HINT)


def missing_reason(device: str) -> str | None:
    """Why an OpenVINO step cannot run here, or None."""
    if device != "cpu":
        return "the OpenVINO steps run on the CPU plugin only"
    return missing("openvino", INSTALL_HINT)


def convert(source: torch.nn.Module | Path, input_size: tuple[int, int, int]) -> Any:
    """An OpenVINO model with a dynamic batch, from an eager module or an ONNX file."""
    ov = require_openvino()
    c, h, w = input_size
    if isinstance(source, Path):
        return ov.convert_model(str(source))
    with torch.no_grad():
        return ov.convert_model(source.eval(), example_input=torch.randn(1, c, h, w), input=[(-1, c, h, w)])


def compile_config(precision: str, hint: str, threads: int) -> dict[str, str]:
    return {
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": hint,
        "INFERENCE_NUM_THREADS": str(threads),
    }


def compiled_precision(compiled: Any) -> str:
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


class OvRuntime:
    """Two compiled models of one OpenVINO model: LATENCY for batch 1, THROUGHPUT (split over streams) above."""

    def __init__(self, model: Any, precision: str, threads: int, cache_dir: Path | None = None) -> None:
        ov = require_openvino()
        core = ov.Core()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        self.latency = core.compile_model(model, "CPU", compile_config(precision, "LATENCY", threads))
        self.throughput = core.compile_model(model, "CPU", compile_config(precision, "THROUGHPUT", threads))
        self.request = self.latency.create_infer_request()
        streams = int(self.throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.queue = ov.AsyncInferQueue(self.throughput, max(1, streams))
        self.streams = max(1, streams)
        self.precision = compiled_precision(self.latency)
        self._parts: list[np.ndarray | None] = []
        self.queue.set_callback(self._done)

    def _done(self, request: Any, index: int) -> None:
        self._parts[index] = request.get_output_tensor(0).data.copy()

    def predict(self, x: np.ndarray) -> torch.Tensor:
        if x.shape[0] == 1 or self.streams == 1:
            self.request.infer({0: x}, share_inputs=True)
            return torch.from_numpy(self.request.get_output_tensor(0).data.copy())
        chunk = math.ceil(x.shape[0] / self.streams)
        pieces = [x[i : i + chunk] for i in range(0, x.shape[0], chunk)]
        self._parts = [None] * len(pieces)
        for index, piece in enumerate(pieces):
            self.queue.start_async({0: piece}, userdata=index, share_inputs=True)
        self.queue.wait_all()
        return torch.from_numpy(np.concatenate(self._parts))

    def describe(self) -> dict[str, Any]:
        return {
            "inference_precision": self.precision,
            "latency_hint": "LATENCY (batch 1, one synchronous request)",
            "throughput_hint": f"THROUGHPUT (larger batches split over {self.streams} asynchronous requests)",
        }


def to_numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


def runtime_functions(runtime: OvRuntime) -> tuple[Callable[[Any], torch.Tensor], Callable[[torch.Tensor], Any]]:
    return runtime.predict, to_numpy


def int8_summary(model: Any) -> dict[str, int]:
    """How much of the model NNCF quantized: FakeQuantize nodes and INT8 weight constants."""
    ops = list(model.get_ops())
    fake = sum(1 for op in ops if op.get_type_name() == "FakeQuantize")
    int8 = sum(
        1 for op in ops if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() in ("i8", "u8")
    )
    return {"fake_quantize_nodes": fake, "int8_constants": int8}


def save(model: Any, directory: Path) -> list[str]:
    """``model.xml`` (the graph, plain XML) and ``model.bin`` (raw weights, FP32 kept): nothing executable."""
    ov = require_openvino()
    ov.save_model(model, str(directory / "model.xml"), compress_to_fp16=False)
    return ["model.xml", "model.bin"]


def read(xml: Path) -> Any:
    return require_openvino().Core().read_model(str(xml))
