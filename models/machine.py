"""The environment every result row carries: a number without its hardware and versions is not a result."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from typing import Any

# CPU flags that decide which INT8/BF16 kernels exist (VNNI for INT8 dot products, AMX tiles, native BF16).
INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native BF16 math; without them BF16 is emulated, slower than FP32
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # INT8 dot products; without them INT8 kernels gain little


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    model, flags, physical = platform.processor() or platform.machine(), set(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
        core = phys = None
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name":
                model = value
            elif key == "flags" and not flags:
                flags = set(value.split())
            elif key == "physical id":
                phys = value
            elif key == "core id":
                core = value
                physical.add((phys, core))
    except OSError:
        pass
    logical = os.cpu_count() or 1
    available = _process_cpus() or logical
    return {
        "cpu_model": model,
        "cpu_flags": [f for f in INTERESTING_FLAGS if f in flags],
        "cpu_logical": logical,
        "cpu_physical_cores": len(physical) or logical,
        "cpu_available": available,
    }


def _process_cpus() -> int:
    """CPUs the process's threads may use together: a measurement process pins its calling thread to one CPU and its
    pool to the others, so the calling thread's own mask alone would say 1."""
    cpus: set[int] = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                cpus |= os.sched_getaffinity(int(tid))
            except OSError:  # the thread ended meanwhile
                continue
        return len(cpus) or len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return 0


def available_cpus() -> int:
    """CPUs this process may run on now (its affinity mask), which caps any sensible thread count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_threads() -> int:
    """Threads for measurement: the CPUs this process may use (all intra-op pools set to the same number)."""
    return max(1, cpu_info()["cpu_available"])


def _versions() -> dict[str, str]:
    from models.checkpoint import library_versions

    return library_versions()


def gpu_info() -> dict[str, Any]:
    """GPU facts; call only where CUDA is in use (asking torch initialises the driver)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    info: dict[str, Any] = {
        "gpu_name": props.name,
        "gpu_sm_count": props.multi_processor_count,
        "gpu_memory_gb": round(props.total_memory / 2**30, 1),
        "gpu_capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        info["gpu_driver"] = (
            out.stdout.strip().splitlines()[index] if out.returncode == 0 and out.stdout.strip() else None
        )
    except (OSError, subprocess.TimeoutExpired, IndexError):
        info["gpu_driver"] = None
    return info


def fingerprint(device: str, threads: int | None = None) -> dict[str, Any]:
    fp: dict[str, Any] = {
        **cpu_info(),
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": _versions(),
    }
    if device == "cuda":
        fp.update(gpu_info())
    return fp


def machine_key(fp: dict[str, Any]) -> tuple:
    """What must match for two measurements to be comparable: the hardware and the key library versions."""
    versions = fp.get("versions") or {}
    return (
        fp.get("cpu_model"),
        fp.get("gpu_name"),
        fp.get("threads"),
        versions.get("torch"),
        versions.get("onnxruntime"),
        versions.get("tensorrt"),
    )


def hardware_kind(fp: dict[str, Any], device: str) -> str:
    """A short name for a kind of machine: the GPU on CUDA, else the CPU model and its INT8/BF16 flags."""
    if device == "cuda" and fp.get("gpu_name"):
        return str(fp["gpu_name"])
    flags = [f for f in fp.get("cpu_flags") or [] if f != "avx2"]
    return f"{fp.get('cpu_model') or 'unknown CPU'}" + (f" ({', '.join(flags)})" if flags else "")
