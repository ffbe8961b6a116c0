"""``triton/``: a Triton Inference Server model repository for ONNX and OpenVINO variants.

``triton/<name>/config.pbtxt`` names the backend, the model's input and output (names, FP32, shapes without the batch
axis, read from the model file itself), dynamic batching with the measured serving configuration (or the throughput
batch and no delay when none was measured), the instance count and the thread count; ``triton/<name>/1/`` holds the
model files. Triton's OpenVINO backend matches outputs by tensor name and the IR OpenVINO converts from PyTorch
leaves its output unnamed, so that copy (only) is saved again with the output named ``logits``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.export.formats import ModelFiles

OUTPUT_NAME = "logits"
BACKENDS = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


@dataclass
class Io:
    """One input and one output: names and their shapes without the batch axis."""

    input_name: str
    input_dims: list[int]
    output_name: str
    output_dims: list[int]


def model_name(arch: str, recipe: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{arch}-{recipe}").strip("_.-") or "model"


def _dims(values: list[Any], fallback: list[int]) -> list[int]:
    rest = [v if isinstance(v, int) and v > 0 else None for v in values[1:]]
    return [int(v) for v in rest] if rest and all(v is not None for v in rest) else fallback


def onnx_io(path: Path, input_size: list[int], classes: int) -> Io:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    first = next(v for v in graph.input if v.name not in initializers)
    output = graph.output[0]

    def shape(value: Any) -> list[Any]:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]

    return Io(first.name, _dims(shape(first), input_size), output.name, _dims(shape(output), [classes]))


def openvino_io(xml: Path, input_size: list[int], classes: int) -> Io:
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    port, output = model.inputs[0], model.outputs[0]

    def shape(p: Any) -> list[Any]:
        return [d.get_length() if d.is_static else None for d in p.get_partial_shape()]

    out_name = next(iter(sorted(output.get_names())), OUTPUT_NAME)
    return Io(port.get_any_name(), _dims(shape(port), input_size), out_name, _dims(shape(output), [classes]))


def _named_openvino_copy(xml: Path, target: Path) -> None:
    """The IR saved again with its output tensor named (weights kept as they are: no FP16 compression)."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    if not model.outputs[0].get_names():
        model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    ov.save_model(model, str(target / "model.xml"), compress_to_fp16=False)


def _block(lines: list[str], indent: str = "  ") -> str:
    return "\n".join(indent + line for line in lines)


def config_text(name: str, backend: str, io: Io, batching: dict[str, Any], params: dict[str, str], gpu: bool) -> str:
    """config.pbtxt in protobuf text format (``inference.ModelConfig``)."""

    def tensor(tensor_name: str, dims: list[int]) -> str:
        body = [f'name: "{tensor_name}"', "data_type: TYPE_FP32", f"dims: [ {', '.join(map(str, dims))} ]"]
        return "[\n  {\n" + _block(body, "    ") + "\n  }\n]"

    delay = int(round(float(batching["max_delay_ms"]) * 1000))
    parts = [
        f'name: "{name}"',
        f'backend: "{backend}"',
        f"max_batch_size: {int(batching['max_batch'])}",
        f"input {tensor(io.input_name, io.input_dims)}",
        f"output {tensor(io.output_name, io.output_dims)}",
        "dynamic_batching {\n" + _block([f"max_queue_delay_microseconds: {delay}"]) + "\n}",
        "instance_group [\n  {\n"
        + _block([f"count: {int(batching['instances'])}", f"kind: {'KIND_GPU' if gpu else 'KIND_CPU'}"], "    ")
        + "\n  }\n]",
    ]
    for key, value in params.items():
        parts.append(f'parameters {{\n  key: "{key}"\n  value {{ string_value: "{value}" }}\n}}')
    return "\n".join(parts) + "\n"


def write_triton(out: Path, model: ModelFiles, name: str, batching: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """The model repository under ``out/triton``; returns the files written, relative to ``out``. ``meta`` holds
    ``input_size`` and ``classes`` (the shapes to fall back on) and the measured ``threads``."""
    backend = BACKENDS[model.runtime]
    version = out / "triton" / name / "1"
    version.mkdir(parents=True)
    threads = str(int(batching["threads"]))
    if backend == "onnxruntime":
        io = onnx_io(out / model.files[0], meta["input_size"], meta["classes"])
        for file in model.files:
            shutil.copy2(out / file, version / ("model.onnx" if file == model.options["file"] else file))
        params = {"intra_op_thread_count": threads, "inter_op_thread_count": "1"}
    else:
        _named_openvino_copy(out / model.options["xml"], version)
        io = openvino_io(version / "model.xml", meta["input_size"], meta["classes"])
        params = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
        if model.options.get("precision") == "bf16":
            params["HINT_BF16"] = "YES"
    text = config_text(name, backend, io, batching, params, model.gpu)
    (out / "triton" / name / "config.pbtxt").write_text(text)
    return sorted(str(p.relative_to(out)) for p in (out / "triton").rglob("*") if p.is_file())
