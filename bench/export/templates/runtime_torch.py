"""PyTorch: a ``torch.export`` program, run as it was measured (channels_last, autocast, or ``torch.compile`` with
Inductor freezing where the variant was compiled)."""

import contextlib
from pathlib import Path

import numpy as np
import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Model:
    """The exported program's module on ``options["device"]``; compiled with Inductor when the variant was."""

    def __init__(self, folder: Path, threads: int, options: dict) -> None:
        torch.set_num_threads(max(1, threads))
        if options.get("torchao"):
            # The quantized operators the program calls, and Inductor's INT8 fusions (the quantizer module registers
            # them; without them the compiled program runs slower than FP32).
            import torchao.quantization.pt2e  # noqa: F401
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401
        self.device = torch.device(options.get("device", "cpu"))
        program = torch.export.load(str(folder / options["file"]))
        if self.device.type != "cpu":
            program = torch.export.passes.move_to_device_pass(program, self.device)
        module = program.module()
        self.channels_last = bool(options.get("channels_last"))
        if self.channels_last:
            with contextlib.suppress(RuntimeError, NotImplementedError):
                module.to(memory_format=torch.channels_last)
        self.half = bool(options.get("half"))
        self.autocast = DTYPES.get(options.get("autocast") or "")
        self.inductor = dict(options.get("inductor") or {})
        # Inductor's C++ wrapper: "cpp" always, "python" never, "auto" for batch 1 only (faster there, slower above)
        self.cpp_wrapper = options.get("cpp_wrapper")
        if options.get("compile"):
            mode = options.get("compile_mode")
            module = torch.compile(module, mode=None if mode in (None, "default") else mode, dynamic=False)
        self.module = module

    def _settings(self, batch: int) -> contextlib.AbstractContextManager:
        if not self.inductor:
            return contextlib.nullcontext()
        import torch._inductor.config as inductor_config

        settings = dict(self.inductor)
        if self.cpp_wrapper is not None:
            settings["cpp_wrapper"] = self.cpp_wrapper == "cpp" or (self.cpp_wrapper == "auto" and batch == 1)
        return inductor_config.patch(settings)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        if self.half:
            x = x.half()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast)
            if self.autocast is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), self._settings(x.shape[0]), autocast:
            return self.module(x).float().cpu().numpy()
