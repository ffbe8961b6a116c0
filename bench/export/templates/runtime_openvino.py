"""OpenVINO on the CPU, with the settings the variant was measured with.

The inference precision is set explicitly: on a CPU with AMX or avx512_bf16 OpenVINO otherwise runs BF16, which is
not what was measured for an f32 variant.
"""

from pathlib import Path

import numpy as np
import openvino as ov


class Model:
    """One compiled model and one inference request (each instance of a service has its own)."""

    def __init__(self, folder: Path, threads: int, options: dict) -> None:
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": options.get("precision", "f32"),
            "PERFORMANCE_HINT": options.get("hint", "LATENCY"),
            "INFERENCE_NUM_THREADS": str(max(1, threads)),
        }
        self.compiled = core.compile_model(core.read_model(str(folder / options["xml"])), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: batch})
        return self.request.get_output_tensor(0).data.copy()
