"""Dockerfile.cuda and pyproject's `gpu` extra must pin the same versions (torch-tensorrt pins one torch minor)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(requirements):
    out = {}
    for req in requirements:
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^;\s]+)", req)
        if match:
            out[match.group(1).lower()] = match.group(2)
    return out


def _docker_args():
    text = (ROOT / "Dockerfile.cuda").read_text()
    return dict(re.findall(r"^ARG ([A-Z_]+)=(\S+)$", text, flags=re.M))


def test_docker_pins_match_pyproject():
    project = _pyproject()["project"]
    base = _pins(project["dependencies"])
    gpu = _pins(project["optional-dependencies"]["gpu"])
    args = _docker_args()
    assert args["TORCH_VERSION"] == base["torch"]
    assert args["TORCHVISION_VERSION"] == base["torchvision"]
    assert args["TORCH_TENSORRT_VERSION"] == gpu["torch-tensorrt"]
    assert args["ONNXRUNTIME_GPU_VERSION"] == gpu["onnxruntime-gpu"]
    assert args["MODELOPT_VERSION"] == gpu["nvidia-modelopt"]


def test_torch_tensorrt_matches_torch_minor():
    project = _pyproject()["project"]
    torch_minor = ".".join(_pins(project["dependencies"])["torch"].split(".")[:2])
    trt_minor = ".".join(_pins(project["optional-dependencies"]["gpu"])["torch-tensorrt"].split(".")[:2])
    assert torch_minor == trt_minor


def test_gpu_only_packages_stay_out_of_the_cpu_install():
    deps = " ".join(_pyproject()["project"]["dependencies"]).lower()
    assert "tensorrt" not in deps and "onnxruntime-gpu" not in deps


def test_cpu_and_gpu_onnxruntime_are_never_installed_together():
    """They share the onnxruntime/ folder: the CPU build is an extra of its own, never beside onnxruntime-gpu."""
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    names = {k: {re.split(r"[<>=\[ ;]", r)[0].lower() for r in v} for k, v in extras.items()}
    core = {re.split(r"[<>=\[ ;]", r)[0].lower() for r in project["dependencies"]}
    assert "onnxruntime" not in core and "onnxruntime-gpu" not in core
    assert "onnxruntime" in names["cpu"] and "onnxruntime-gpu" in names["gpu"]
    assert "onnxruntime" not in names["gpu"] and "onnxruntime-gpu" not in names["cpu"]
    makefile = (ROOT / "Makefile").read_text()
    assert "[cpu," in makefile and "gpu" not in makefile.split("pip install -e", 1)[1].splitlines()[0]
    assert "uninstall" not in (ROOT / "Dockerfile.cuda").read_text()
