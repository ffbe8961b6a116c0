"""timm's own saved folders: ``config.json`` beside ``model.safetensors`` or ``pytorch_model.bin``.

That is what ``timm.models.push_to_hub.save_for_hf`` writes and what a Hugging Face hub download of a timm
model looks like on disk; it records the architecture, the class count, the label names and the pretrained
config (input size, mean, std, crop). It is read offline, with the weights loaded as tensors only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data.errors import CheckpointError
from models._formats import RawCheckpoint, load_safetensors, strip_wrappers, torch_load

CONFIG = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_timm_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file()


def read_timm_folder(path: Path) -> tuple[RawCheckpoint, Path]:
    """(weights and header, the weight file read) of a timm folder."""
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path / CONFIG} is not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / CONFIG} is not a JSON object")
    weights = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{path} has {CONFIG} but neither {' nor '.join(WEIGHT_FILES)}")
    if weights.suffix == ".safetensors":
        state_dict, _ = load_safetensors(weights)
        placeholders: list[str] = []
    else:
        obj, placeholders = torch_load(weights)
        state_dict = obj if isinstance(obj, dict) else {}
    header: dict[str, Any] = {}
    arch = config.get("architecture") or config.get("model_name")
    if isinstance(arch, str):
        header["arch"] = arch
    if isinstance(config.get("num_classes"), int):
        header["num_classes"] = config["num_classes"]
    labels = config.get("label_names") or config.get("labels")
    if isinstance(labels, list):
        header["class_names"] = [str(x) for x in labels]
    pretrained = config.get("pretrained_cfg")
    if isinstance(pretrained, dict):
        header["data_config"] = pretrained
    return RawCheckpoint(strip_wrappers(state_dict), header, "timm-folder", placeholders), weights
