"""Torch-TensorRT: the serialized engine program. It runs only on the GPU model and TensorRT version that built it
(MODEL_CARD.md names them)."""

from pathlib import Path

import numpy as np
import torch
import torch_tensorrt


class Model:
    """The engine program's module on the GPU."""

    def __init__(self, folder: Path, threads: int, options: dict) -> None:
        torch.set_num_threads(max(1, threads))
        program = torch_tensorrt.load(str(folder / options["file"]))
        self.module = program.module() if hasattr(program, "module") else program

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch).cuda()).float().cpu().numpy()
