"""ONNX producer: export + parity check, ORT sessions, the saved variant, and bad input.

Tolerances: an FP32 ONNX graph computes the same function as eager with float sums reordered, so logits
may differ by ~1e-5 relative; we allow 1e-3 relative to the largest logit (the harness's own parity
threshold) and require identical top-1 on every val image of the tiny model.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from data.errors import InputError
from models.checkpoint import LoadedModel, ModelInfo
from optim import BuildContext, build, parse
from optim.backends.onnx_export import ExportConfig, ParityError, check_parity, export_onnx
from optim.backends.onnx_runtime import create_session


def _ctx(loaded, tmp_path, **kw) -> BuildContext:
    return BuildContext(loaded=loaded, device="cpu", workdir=tmp_path / "work", threads=1, quick=True, **kw)


def test_onnx_cli_writes_a_variant_that_loads_in_a_new_process(tiny_ckpt, cli, tmp_path):
    out = tmp_path / "ort"
    proc = cli(["optim.onnx", str(tiny_ckpt), "--opset", "17", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "ONNX parity vs eager" in proc.stdout and "top-1" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"] == "ort(opset=17)"
    step = manifest["steps"][-1]
    assert step["exporter"] == "dynamo" and step["opset"] == 17 and step["dynamic_batch"] is True
    assert step["parity"]["passed"] and step["parity"]["agreement"] == 100.0 and step["parity"]["data"] == "val"
    assert step["runtime"]["providers"] == ["CPUExecutionProvider"]
    assert manifest["load"] == {"kind": "onnx", "file": "model.onnx"}
    assert manifest["accuracy"]["agreement"] == 100.0
    assert (out / "model.onnx").stat().st_size == manifest["artifacts"]["model.onnx"]["bytes"]

    # A new process loads the directory and matches eager on batches of 1 and 5 (dynamic batch axis).
    code = (
        "import sys, torch, models; from optim import Variant\n"
        f"v = Variant.load({str(out)!r}); m = models.load({str(tiny_ckpt)!r}).model\n"
        "for b in (1, 5):\n"
        "    x = torch.randn(b, 3, 32, 32, generator=torch.Generator().manual_seed(b))\n"
        "    with torch.inference_mode(): ref = m(x)\n"
        "    got = v(x)\n"
        "    assert got.shape == ref.shape, (got.shape, ref.shape)\n"
        "    assert (got - ref).abs().max() <= 1e-3 * (1 + ref.abs().max()), (got - ref).abs().max()\n"
        "print('ok')\n"
    )
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0 and "ok" in check.stdout, check.stderr[-2000:]


class ExportSabotage(nn.Module):
    """Computes one thing in eager and another under torch.export: a graph the parity check must refuse."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if torch.compiler.is_exporting():
            return logits.flip(1)  # the exported graph permutes the classes
        return logits


def test_parity_check_fails_the_variant_on_a_broken_graph(tiny_loaded, tmp_path):
    broken = LoadedModel(ExportSabotage(tiny_loaded.model), tiny_loaded.info)
    ctx = _ctx(broken, tmp_path)
    with pytest.raises(ParityError, match="parity check failed"):
        build("ort", broken, ctx)


def test_parity_check_catches_a_corrupted_initializer(tiny_loaded, tmp_path):
    import onnx
    from onnx import numpy_helper

    path = tmp_path / "m.onnx"
    example = torch.randn(2, 3, 32, 32)
    notes = export_onnx(tiny_loaded.model, example, path, ExportConfig(slim=False))
    assert notes["exporter"] == "dynamo"
    model = onnx.load(str(path))
    weight = next(i for i in model.graph.initializer if i.name == "fc.weight")
    weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weight), "fc.weight"))
    onnx.save(model, str(path))
    session = create_session(path, "cpu", 1)
    batches = [torch.randn(8, 3, 32, 32)]
    with pytest.raises(ParityError, match="max abs diff"):
        check_parity(tiny_loaded.model, lambda x: session.run(None, {"input": x})[0], batches)


def test_torchscript_fallback_is_recorded(tiny_loaded, tmp_path, monkeypatch):
    import optim.backends.onnx_export as onnx_export

    def refuse(*args, **kwargs):
        raise RuntimeError("Invalid ranges [2:1]")  # what the dynamo exporter said on convnext_tiny

    monkeypatch.setattr(onnx_export, "_dynamo_export", refuse)
    path = tmp_path / "ts.onnx"
    notes = export_onnx(tiny_loaded.model, torch.randn(2, 3, 32, 32), path, ExportConfig(slim=False))
    assert notes["exporter"] == "torchscript"
    assert "dynamo exporter failed" in notes["warning"] and "Invalid ranges" in notes["warning"]
    session = create_session(path, "cpu", 1)
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        ref = tiny_loaded.model(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], ref, rtol=1e-3, atol=1e-3)


def test_session_uses_the_harness_thread_count(tiny_loaded, tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(tiny_loaded.model, torch.randn(2, 3, 32, 32), path, ExportConfig())
    session = create_session(path, "cpu", 1)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("ort(opset=5)", "opset must be between"),
        ("ort(opset=x)", "must be an integer"),
        ("ort(fast=1)", "unknown ort argument"),
        ("ort+ort", "cannot run after ort"),
    ],
)
def test_bad_ort_recipes_fail_at_parse_time(recipe, message):
    with pytest.raises(InputError, match=message):
        parse(recipe)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--opset", "5"], "opset must be between"),
        (["/no/such/ckpt.pt"], "checkpoint not found"),
        (["--int8", "--calib", "bogus"], "--calib must be one of"),
        (["--calib-size", "0"], "--calib-size must be positive"),
    ],
)
def test_onnx_cli_bad_input_exits_2_with_one_line(cli_here, tiny_ckpt, args, message):
    argv = args if args[0].startswith("/") else [str(tiny_ckpt), *args]
    proc = cli_here(["optim.onnx", *argv])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr


def test_random_init_model_is_parity_checked_on_random_inputs(tmp_path):
    import models

    loaded = models.load(None, arch="resnet10t", num_classes=10, img_size=32)
    assert isinstance(loaded.info, ModelInfo)
    variant = build("ort", loaded, _ctx(loaded, tmp_path))
    step = variant.manifest["steps"][-1]
    assert step["parity"]["data"] == "random" and step["parity"]["passed"]
    out = variant(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)


def test_two_checkpoints_of_one_architecture_get_default_folders_of_their_own(tiny_ckpt, cli, tmp_path):
    """Without --out a variant goes to results/variants/<checkpoint stem>-<recipe>: a second checkpoint of the same
    architecture was refused (the folder was named after the architecture) with advice to --force over the first."""
    import shutil

    for name in ("dogs_a.pt", "dogs_b.pt"):
        shutil.copy(tiny_ckpt, tmp_path / name)
    for name in ("dogs_a.pt", "dogs_b.pt"):
        proc = cli(["optim.onnx", name, "--results", "results"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
    for stem in ("dogs_a", "dogs_b"):
        assert (tmp_path / "results" / "variants" / f"{stem}-ort" / "manifest.json").is_file()
