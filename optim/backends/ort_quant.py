"""ONNX Runtime static INT8: pre-process, calibrate on train images, write a QDQ graph.

U8 activations and S8 per-channel weights: on CPUs without VNNI, S8 activations (S8S8) run several times slower
than U8S8, and per-channel weights keep depthwise and narrow convolutions accurate. Nodes can be kept in FP32
by module name (mapped through the weight initializer the exporter names after the parameter) or by
position (the first convolution and the classifier), which is how the accuracy fallbacks work.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import InputError
from optim.backends.onnx_export import INPUT_NAME

CALIB_METHODS = ("minmax", "entropy", "percentile")
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


@dataclass(frozen=True)
class OrtQuantConfig:
    """What the ORT quantizer is asked for; ``keep_nodes`` are ONNX node names left in FP32."""

    calib: str = "minmax"
    per_channel: bool = True
    reduce_range: bool = False
    keep_nodes: tuple[str, ...] = ()

    def validate(self) -> OrtQuantConfig:
        if self.calib not in CALIB_METHODS:
            raise InputError(f"calibration method must be one of {', '.join(CALIB_METHODS)}, got {self.calib!r}")
        return self


def preprocess(src: Path, dst: Path) -> dict[str, Any]:
    """ORT's recommended pre-processing: symbolic shape inference, graph optimization, ONNX shape inference."""
    from optim.backends.onnx_runtime import require_ort

    require_ort()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    start = time.perf_counter()
    notes: dict[str, Any] = {}
    try:
        quant_pre_process(str(src), str(dst))
    except Exception as exc:  # symbolic shape inference fails on some exporter outputs; ONNX's own still runs
        notes["preprocess_warning"] = f"symbolic shape inference failed ({type(exc).__name__}); skipped it"
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    notes["preprocess_s"] = round(time.perf_counter() - start, 3)
    return notes


def quantize_onnx(src: Path, dst: Path, calib_batches: Sequence[np.ndarray], cfg: OrtQuantConfig) -> dict[str, Any]:
    """Quantize pre-processed ``src`` into ``dst`` (QDQ); returns notes for the manifest."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    cfg.validate()
    if not calib_batches:
        raise InputError("no calibration images: the train split is empty")
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[cfg.calib]

    class Reader(CalibrationDataReader):
        """Feeds the calibration batches once (ORT asks for dicts until it gets None)."""

        def __init__(self) -> None:
            self._it = iter(calib_batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}

    reader = Reader()
    start = time.perf_counter()
    # ORT prints histogram progress to stdout and logs every excluded node; keep the CLI report readable.
    with contextlib.redirect_stdout(io.StringIO()), _quiet_logging():
        quantize_static(
            str(src),
            str(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=cfg.per_channel,
            reduce_range=cfg.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(cfg.keep_nodes) or None,
            calibrate_method=method,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    images = int(sum(b.shape[0] for b in calib_batches))
    return {
        "format": "QDQ",
        "activations": "uint8 (asymmetric, per-tensor)",
        "weights": "int8 (symmetric, per-channel)" if cfg.per_channel else "int8 (symmetric, per-tensor)",
        "calibration": {"method": cfg.calib, "images": images},
        "fp32_nodes": list(cfg.keep_nodes),
        "quantize_s": round(time.perf_counter() - start, 3),
        "int8_bytes": dst.stat().st_size,
    }


@contextlib.contextmanager
def _quiet_logging():
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def weighted_nodes(path: Path) -> list[Any]:
    """Nodes with weights (Conv/Gemm/MatMul) in graph order."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return [n for n in graph.node if n.op_type in WEIGHTED_OPS and any(i in initializers for i in n.input[1:2])]


def end_nodes(path: Path) -> list[str]:
    """The first weighted node (the stem convolution) and the last one (the classifier)."""
    nodes = weighted_nodes(path)
    if not nodes:
        raise InputError(f"{path.name} has no Conv/Gemm/MatMul node to keep in FP32")
    names = [nodes[0].name, nodes[-1].name]
    return list(dict.fromkeys(names))


def nodes_for_modules(path: Path, module_names: Sequence[str]) -> dict[str, str]:
    """Module name -> ONNX node name, through the weight initializer (``layer1.0.conv1.weight``).

    The dynamo exporter names initializers after parameters even when it folds BatchNorm into the
    convolution; its ``name_scopes`` metadata is the second clue. Modules that cannot be found are left out.
    """
    found: dict[str, str] = {}
    nodes = weighted_nodes(path)
    by_weight = {n.input[1]: n.name for n in nodes}
    for name in module_names:
        node = by_weight.get(f"{name}.weight")
        if node is None:
            for n in nodes:
                scopes = next((p.value for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
                if f"'{name}'" in scopes:
                    node = n.name
                    break
        if node is not None:
            found[name] = node
    return found
