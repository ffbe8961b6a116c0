"""Helpers the tests share: a run configuration for a tiny checkpoint with short timing budgets."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from bench.config import RunConfig
from bench.scenarios import ScenarioConfig, configs_for
from models.spec import LoadSpec


def run_module(args: list[str], env: dict[str, str] | None = None, timeout: float = 600, cwd: Path | None = None):
    """Run ``python -m ...`` as a user would (from ``cwd``); returns the CompletedProcess (text)."""
    import subprocess
    import sys

    full_env = {**os.environ, **(env or {})}
    if cwd is not None:  # the project is installed in the venv; from another folder it must still import
        root = str(Path(__file__).resolve().parent.parent)
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, full_env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd
    )


def short_scenarios(min_seconds: float = 0.1, min_iters: int = 5) -> tuple[ScenarioConfig, ...]:
    """The quick scenarios with a tenth of their budget: enough samples to test the plumbing, not to decide."""
    return tuple(
        s.__class__(**{**s.to_dict(), "min_seconds": min_seconds, "min_iters": min_iters, "warmup_seconds": 0.0})
        for s in configs_for(argparse.Namespace(quick=True, batch_size=None), "cpu")
    )


def tiny_config(ckpt: str | Path | LoadSpec, recipes: list[str] | tuple[str, ...], **changes: Any) -> RunConfig:
    """A run of ``recipes`` on ``ckpt`` (a path or a LoadSpec): one thread, quick, digits data."""
    load = ckpt if isinstance(ckpt, LoadSpec) else LoadSpec(path=str(ckpt))
    values: dict[str, Any] = {
        "load": load,
        "recipes": tuple(recipes),
        "scenarios": short_scenarios(),
        "data_spec": "digits",
        "threads": 1,
        "quick": True,
        "run_id": "t",
        "timeout_s": 300.0,
    }
    values.update(changes)
    return RunConfig(**values).validated()


# ---------------------------------------------------------------- files shaped like our users'

USER_ARCH = "resnet10t"
USER_CLASSES = 3
USER_IMG = 32

FACTORY_SOURCE = '''
"""A user's own model: a timm backbone without its head plus their own nn.Linear head."""
import timm
from torch import nn


class DogNet(nn.Module):
    def __init__(self, num_classes, backbone="resnet10t"):
        super().__init__()
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.head = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def build(num_classes, backbone="resnet10t"):
    return DogNet(num_classes, backbone)


def not_a_model(num_classes=3):
    return "a string"
'''


def image_folder(root: Path, classes: int = USER_CLASSES, per_class: int = 6, size: int = 40) -> Path:
    """A small ImageFolder (train/ and val/, JPEG and PNG, plus the clutter real folders have)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", max(2, per_class // 2))):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                pixels[..., c % 3] = 200  # a colour per class, so a trained model could tell them apart
                suffix = ".jpg" if i % 2 else ".png"
                Image.fromarray(pixels).save(folder / f"img_{i}{suffix}")
            (folder / ".DS_Store").write_bytes(b"\x00\x01")
        (root / split / ".ipynb_checkpoints").mkdir(exist_ok=True)
    return root


def user_checkpoints(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """Checkpoint files in the shapes users bring, with the loading options each needs on the command line."""
    import argparse

    import timm
    import torch
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(USER_ARCH, pretrained=False, num_classes=USER_CLASSES).eval()
    sd = model.state_dict()

    def prefixed(prefix: str) -> dict:
        return {prefix + k: v for k, v in sd.items()}

    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, list[str]]] = {}

    def save(name: str, obj, options: list[str]) -> None:
        path = root / name
        torch.save(obj, path)
        out[name] = (path, options)

    model_opt = ["--model", USER_ARCH]
    save("plain.pth", sd, model_opt)
    save("nested_ema.pt", {"state_dict": prefixed("module."), "state_dict_ema": sd, "epoch": 3}, model_opt)
    # timm's train script: the arch sits in argparse args (an object torch's weights-only reader refuses)
    args = argparse.Namespace(model=USER_ARCH, num_classes=USER_CLASSES, lr=0.1)
    save("timm_train.pth.tar", {"state_dict": sd, "arch": USER_ARCH, "args": args, "epoch": 5}, [])
    lightning = {"epoch": 2, "global_step": 10, "pytorch-lightning_version": "2.4.0", "optimizer_states": []}
    save(
        "lightning_model.ckpt",
        {
            **lightning,
            "state_dict": {**prefixed("model."), "loss.weight": torch.ones(3)},
            "hyper_parameters": {"model_name": USER_ARCH, "lr": 0.01},
        },
        [],
    )
    save(
        "lightning_net.ckpt", {**lightning, "state_dict": prefixed("net."), "hyper_parameters": {"lr": 0.01}}, model_opt
    )
    hydra = OmegaConf.create({"model": {"name": USER_ARCH, "num_classes": USER_CLASSES}, "optim": {"lr": 0.01}})
    save(
        "lightning_hydra.ckpt", {**lightning, "state_dict": prefixed("model."), "hyper_parameters": {"cfg": hydra}}, []
    )
    save("ddp.pt", {"model": prefixed("module.")}, model_opt)
    save("compiled.pt", prefixed("_orig_mod."), model_opt)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(root / "weights.safetensors"))
    out["weights.safetensors"] = (root / "weights.safetensors", model_opt)
    from timm.models import save_for_hf

    labels = {"label_names": ["a", "b", "c"]}
    save_for_hf(model, str(root / "timm_folder"), model_config=labels, safe_serialization=True)
    out["timm_folder"] = (root / "timm_folder", [])
    (root / "user_models.py").write_text(FACTORY_SOURCE)
    import importlib
    import sys

    sys.path.insert(0, str(root))
    try:
        user_models = importlib.import_module("user_models")
        custom = user_models.build(USER_CLASSES).eval()
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("user_models", None)
    save(
        "custom_head.ckpt",
        {
            **lightning,
            "state_dict": {"model." + k: v for k, v in custom.state_dict().items()},
            "hyper_parameters": {"num_classes": USER_CLASSES},
        },
        ["--model", "user_models:build", "--model-kwargs", f"num_classes={USER_CLASSES}"],
    )
    return out


REPORT_FINGERPRINT = {"cpu_model": "Test CPU", "cpu_flags": ["avx2"], "threads": 2, "versions": {"torch": "x"}}


def report_rows(variant: str, p50: float, top1: float, thr: float, cov: float = 0.02) -> list[dict[str, Any]]:
    """A measured variant's latency and throughput rows, as a sweep writes them, for tests of the reports."""
    common = {
        "variant": variant,
        "recipe": variant,
        "device": "cpu",
        "status": "ok",
        "top1": top1,
        "top5": 100.0,
        "size_mb": 5.0,
        "build_s": 0.1,
        "img_size": 32,
        "fingerprint": REPORT_FINGERPRINT,
        "quick": False,
    }
    return [
        {**common, "scenario": "latency", "batch_size": 1, "p50_ms": p50, "p90_ms": p50, "p99_ms": p50, "cov": cov},
        {**common, "scenario": "throughput", "batch_size": 16, "throughput_img_s": thr},
    ]
