"""Every checkpoint layout our users bring round-trips to identical logits; unsafe or wrong ones are refused."""

from __future__ import annotations

import os

import pytest
import torch

import models
from data.errors import CheckpointError

ARCH = "resnet10t"
CLASSES = 7


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = models.create_model(ARCH, CLASSES).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
    return model, x, logits


def _logits(loaded, x):
    with torch.no_grad():
        return loaded.model(x)


def _prefixed(state_dict, prefix):
    return {prefix + k: v for k, v in state_dict.items()}


LAYOUTS = {
    "plain": lambda sd: sd,
    "nested_state_dict": lambda sd: {"state_dict": sd, "epoch": 3},
    "nested_model": lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
    "ddp": lambda sd: _prefixed(sd, "module."),
    "compiled": lambda sd: _prefixed(sd, "_orig_mod."),
    "lightning": lambda sd: {
        "state_dict": {**_prefixed(sd, "model."), "criterion.weight": torch.ones(3)},
        "hyper_parameters": {"lr": 0.01},
        "pytorch-lightning_version": "2.4.0",
    },
    "lightning_net": lambda sd: {"state_dict": _prefixed(sd, "net."), "hyper_parameters": {"model_name": ARCH}},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_round_trip_to_identical_logits(layout, reference, tmp_path):
    model, x, logits = reference
    path = tmp_path / f"{layout}.pt"
    torch.save(LAYOUTS[layout](model.state_dict()), path)
    loaded = models.load(path, arch=ARCH)
    assert loaded.info.num_classes == CLASSES  # inferred from the classifier weight
    assert torch.equal(_logits(loaded, x), logits)


def test_ema_weights_are_preferred(reference, tmp_path):
    model, x, logits = reference
    other = models.create_model(ARCH, CLASSES).state_dict()
    path = tmp_path / "ema.pt"
    torch.save({"state_dict": other, "state_dict_ema": model.state_dict()}, path)
    assert torch.equal(_logits(models.load(path, arch=ARCH), x), logits)


def test_our_format_needs_no_arch_and_keeps_metadata(reference, tmp_path):
    model, x, logits = reference
    info = models.ModelInfo(
        arch=ARCH,
        num_classes=CLASSES,
        data_config={"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3},
        class_names=tuple("abcdefg"),
        data_spec="digits",
    )
    path = models.save(tmp_path / "ours.pt", model, info, metrics={"val_top1": 91.0})
    raw = torch.load(path, weights_only=True)  # plain tensors and values only
    assert raw["arch"] == ARCH
    loaded = models.load(path)
    assert loaded.info.class_names == tuple("abcdefg")
    assert loaded.info.input_size == (3, 32, 32)
    assert loaded.info.metrics["val_top1"] == 91.0
    assert loaded.info.sha256 and len(loaded.info.sha256) == 64
    assert torch.equal(_logits(loaded, x), logits)


def test_safetensors(reference, tmp_path):
    from safetensors.torch import save_file

    model, x, logits = reference
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    assert torch.equal(_logits(models.load(path, arch=ARCH), x), logits)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_becomes_an_inert_placeholder(reference, tmp_path):
    """A __reduce__ to os.system beside real weights: the weights load, the payload is recorded, nothing runs."""
    model, x, logits = reference
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": model.state_dict(), "payload": _Exploit(marker)}, path)
    loaded = models.load(path, arch=ARCH)
    assert not marker.exists()
    assert {"posix.system", "nt.system"} & set(loaded.info.placeholders)
    assert torch.equal(_logits(loaded, x), logits)
    torch.save({"payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="without model weights"):
        models.load(path, arch=ARCH)
    assert not marker.exists()


@pytest.mark.parametrize(
    "make,arch,classes,match",
    [
        (lambda p: None, ARCH, None, "not found"),
        (lambda p: p.write_bytes(b"\x80\x04garbage"), ARCH, None, "not a"),
        (lambda p: torch.save([1, 2, 3], p), ARCH, None, "without model weights"),
        (lambda p: torch.save(models.create_model(ARCH, CLASSES).state_dict(), p), "no_such_arch_xyz", None, "unknown"),
        (lambda p: torch.save(models.create_model(ARCH, CLASSES).state_dict(), p), ARCH, 9, "has 7 classes"),
        (lambda p: torch.save(models.create_model(ARCH, CLASSES).state_dict(), p), "resnet18", None, "does not fit"),
        (lambda p: torch.save(models.create_model(ARCH, CLASSES).state_dict(), p), None, None, "--model"),
        (
            lambda p: torch.save(models.create_model(ARCH, CLASSES).state_dict(), p),
            "mobilenetv3_small_050",
            None,
            r"only \d+ of mobilenetv3_small_050's \d+ weights are in it: check --model",
        ),
    ],
    ids=["missing", "garbage", "not-weights", "unknown-arch", "class-count", "wrong-arch", "no-arch", "other-family"],
)
def test_bad_checkpoints_raise_clear_errors(tmp_path, make, arch, classes, match):
    path = tmp_path / "ckpt.pt"
    make(path)
    with pytest.raises(CheckpointError, match=match):
        models.load(path, arch=arch, num_classes=classes)


def test_truncated_checkpoint(reference, tmp_path):
    model, _, _ = reference
    path = tmp_path / "full.pt"
    torch.save(model.state_dict(), path)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        models.load(tmp_path / "cut.pt", arch=ARCH)


def test_mismatch_names_offending_keys(tmp_path):
    sd = models.create_model(ARCH, CLASSES).state_dict()
    sd.pop("fc.bias")
    path = tmp_path / "partial.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="fc.bias"):
        models.load(path, arch=ARCH)


def test_random_init_needs_arch_and_marks_no_weights():
    loaded = models.load(None, arch=ARCH, num_classes=5, img_size=48)
    assert not loaded.info.has_weights
    assert loaded.info.input_size == (3, 48, 48)
    with pytest.raises(CheckpointError):
        models.load(None)
