"""ONNX file -> ONNX Runtime session with the harness's thread count, and the predict/prepare pair around it.

CPU: the CPU execution provider with graph optimization level ALL, intra-op threads equal to torch's
(the harness fixes one count for every pool), inter-op 1 (a single-input CNN has no parallel branches
worth a second pool). CUDA: the TensorRT EP (engine cache under the variant's directory) and the CUDA EP
when onnxruntime-gpu provides them, with IO binding so the timed call moves no data through the host.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.errors import MissingDependencyError, require
from optim.backends.onnx_export import INPUT_NAME

CPU_HINT = "pip install -e '.[cpu]'"
GPU_HINT = "pip install .[gpu] (onnxruntime-gpu) or build Dockerfile.cuda"


def require_ort(device: str = "cpu"):
    """onnxruntime, or MissingDependencyError naming the extra that installs it for ``device``."""
    return require("onnxruntime", GPU_HINT if device == "cuda" else CPU_HINT)


def missing_reason(device: str) -> str | None:
    """Why ONNX Runtime cannot run on ``device`` here (not installed, or no CUDA provider), or None."""
    try:
        ort = require_ort(device)
    except MissingDependencyError as exc:
        return str(exc)
    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"onnxruntime has no CUDAExecutionProvider ({GPU_HINT})"
    return None


def harness_threads() -> int:
    """The thread count the harness chose (``OPTBENCH_THREADS``), else torch's."""
    value = os.environ.get("OPTBENCH_THREADS")
    return int(value) if value and value.isdigit() and int(value) > 0 else torch.get_num_threads()


def providers_for(device: str, cache_dir: Path | None) -> list[Any]:
    """Execution providers in priority order for ``device``; raises when CUDA is asked for and absent."""
    if device != "cuda":
        return ["CPUExecutionProvider"]
    reason = missing_reason(device)
    if reason:
        raise MissingDependencyError(f"ORT on cuda: {reason}")
    ort = require_ort(device)
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        trt: dict[str, Any] = {"trt_fp16_enable": False}
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            trt.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)})
        providers.append(("TensorrtExecutionProvider", trt))
    providers.append("CUDAExecutionProvider")
    providers.append("CPUExecutionProvider")
    return providers


def create_session(path: Path, device: str, threads: int, cache_dir: Path | None = None):
    """An ``InferenceSession`` for ``path`` configured as the module docstring says."""
    ort = require_ort(device)

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # warnings about unused initializers etc. are noise in a benchmark log
    return ort.InferenceSession(str(path), options, providers=providers_for(device, cache_dir))


def session_runtime(session, device: str) -> tuple[Callable[[Any], torch.Tensor], Callable[[torch.Tensor], Any]]:
    """(predict, prepare_input) for a session: numpy in/out on CPU, IO binding on CUDA tensors."""
    output_name = session.get_outputs()[0].name
    if device != "cuda":

        def prepare_cpu(x: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(x.detach().cpu().float().numpy())

        def predict_cpu(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(session.run([output_name], {INPUT_NAME: x})[0])

        return predict_cpu, prepare_cpu

    out_shape = session.get_outputs()[0].shape
    num_classes = out_shape[1] if len(out_shape) > 1 and isinstance(out_shape[1], int) else None

    def prepare_cuda(x: torch.Tensor) -> torch.Tensor:
        x = x.to("cuda", dtype=torch.float32, non_blocking=True).contiguous()
        torch.cuda.current_stream().synchronize()  # ORT reads on its own stream: the copy must be done first
        return x

    def predict_cuda(x: torch.Tensor) -> torch.Tensor:
        binding = session.io_binding()
        binding.bind_input(INPUT_NAME, "cuda", 0, np.float32, tuple(x.shape), x.data_ptr())
        if num_classes is not None:
            out = torch.empty((x.shape[0], num_classes), device="cuda", dtype=torch.float32)
            binding.bind_output(output_name, "cuda", 0, np.float32, tuple(out.shape), out.data_ptr())
            session.run_with_iobinding(binding)
            return out
        binding.bind_output(output_name, "cuda")
        session.run_with_iobinding(binding)
        return torch.from_numpy(binding.copy_outputs_to_cpu()[0])

    return predict_cuda, prepare_cuda
