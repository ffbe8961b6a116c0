"""ONNX Runtime, with the session options the variant was measured with."""

from pathlib import Path

import numpy as np
import onnxruntime as ort


class Model:
    """One InferenceSession: graph optimizations on, ``threads`` intra-op threads, one inter-op thread."""

    def __init__(self, folder: Path, threads: int, options: dict) -> None:
        settings = ort.SessionOptions()
        settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        settings.intra_op_num_threads = max(1, threads)
        settings.inter_op_num_threads = 1
        settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = options.get("providers") or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(folder / options["file"]), settings, providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input: batch})[0]
