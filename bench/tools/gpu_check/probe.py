"""The machine as the steps' interpreter sees it: GPU, driver, CUDA, cuDNN, torch, CPU and package versions.

The probe runs in a child with the steps' ``PYTHONPATH`` (carried wheels included), not in this process: what
matters is what the steps will import, and a torch that fails to import must be reported, not crash the check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from bench.tools.gpu_check.process import capture, captured, started
from models.machine import cpu_info

# Packages the summary reports; the first group is what the check's own steps import.
NEEDED = (
    "torch",
    "timm",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "pillow",
    "psutil",
    "tqdm",
    "tabulate",
    "matplotlib",
    "tensorboard",
    "pytest",
    "torchao",
)
OPTIONAL = (
    "torchvision",
    "safetensors",
    "torch-pruning",
    "onnx",
    "onnxscript",
    "onnxslim",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "nncf",
    "torch-tensorrt",
    "tensorrt",
    "nvidia-modelopt",
    "pytest-benchmark",
)

_PROBE = r"""
import json, platform, sys
from importlib import metadata
out = {"python": platform.python_version(), "executable": sys.executable, "packages": {}}
for name in json.loads(sys.argv[1]):
    try:
        out["packages"][name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out["packages"][name] = None
try:
    import torch
    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda
    out["cuda_available"] = bool(torch.cuda.is_available())
    out["cudnn"] = torch.backends.cudnn.version() if out["cuda_available"] else None
    if out["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        out["gpu"] = {"name": p.name, "sm_count": p.multi_processor_count, "memory_mib": p.total_memory // 2**20,
                      "capability": f"{p.major}.{p.minor}", "count": torch.cuda.device_count()}
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
print("PROBE " + json.dumps(out))
"""


def describe_machine(env: dict[str, str], probe: subprocess.Popen | str | None = None) -> dict[str, Any]:
    """GPU, driver, CUDA, cuDNN, torch, CPU and package versions, as the steps' interpreter sees them."""
    code, out = captured(probe or started(probe_command(), env), 120)
    line = next((x for x in out.splitlines() if x.startswith("PROBE ")), None)
    info: dict[str, Any] = json.loads(line[6:]) if line else {"probe_error": out.strip()[-500:] or f"exit {code}"}
    info["cpu"] = cpu_info()["cpu_model"]
    info["cpu_count"] = os.cpu_count()
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
        _, csv = capture([smi, f"--query-gpu={query}", "--format=csv,noheader"], env, 30)
        info["nvidia_smi"] = csv.strip().splitlines()
        _, banner = capture([smi], env, 30)
        found = re.search(r"CUDA Version:\s*([\d.]+)", banner)
        info["driver_cuda"] = found[1] if found else None
        found = re.search(r"Driver Version:\s*([\d.]+)", banner)
        info["driver"] = found[1] if found else None
    return info


def probe_command(extra: Sequence[str] = ()) -> list[str]:
    """The probe, asked for the reported packages and for those unpacked from carried wheels (seen or not)."""
    return [sys.executable, "-c", _PROBE, json.dumps(list(dict.fromkeys([*NEEDED, *OPTIONAL, *extra])))]
