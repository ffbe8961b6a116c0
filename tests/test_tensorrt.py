"""TensorRT producer: what can be checked without a GPU (parsing, cache keys, the missing-dependency path).

The engine build itself is marked ``gpu`` and runs only where CUDA and torch-tensorrt are installed.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from data.errors import InputError, MissingDependencyError
from optim import BuildContext, build, parse
from optim.tensorrt import engine_cache_key, missing_reason, require_torch_tensorrt

HAS_TRT = torch.cuda.is_available() and importlib.util.find_spec("torch_tensorrt") is not None
INSTALLED = "torch-tensorrt and CUDA are installed: the missing-dependency path is not reachable"


@pytest.mark.parametrize("recipe, precision", [("trt", None), ("trt(fp16)", "fp16"), ("trt(int8)", "int8")])
def test_parse_trt_args(recipe, precision):
    assert parse(recipe).steps[0].args.get("precision") == precision  # left out: the step's default, fp16


@pytest.mark.parametrize("recipe, message", [("trt(int4)", "fp16, int8"), ("trt(fp16,int8)", "precision given twice")])
def test_bad_trt_arguments_fail_at_parse(recipe, message):
    with pytest.raises(InputError) as err:
        parse(recipe)
    assert message in str(err.value) and recipe in str(err.value)


def test_engine_cache_key_names_gpu_and_trt_version():
    assert engine_cache_key("NVIDIA H100 80GB HBM3", "10.9.0.34") == "NVIDIA_H100_80GB_HBM3-trt10.9.0.34"
    assert engine_cache_key("Tesla T4", "10.3.0") != engine_cache_key("NVIDIA A10G", "10.3.0")
    assert engine_cache_key("Tesla T4", "10.3.0") != engine_cache_key("Tesla T4", "10.7.0")
    assert "/" not in engine_cache_key("weird/gpu name", "1.0")


def test_trt_is_unavailable_on_cpu_with_a_reason():
    assert missing_reason("cpu") == "TensorRT runs only on CUDA devices"
    recipe = parse("prune(0.5)+trt(fp16)")
    reason = recipe.unavailable_reason("cpu")
    assert reason and "trt(fp16)" in reason and "cuda" in reason


def test_building_trt_on_cpu_fails_as_bad_input(tmp_path):
    import models

    loaded = models.load(None, arch="resnet10t", num_classes=10, img_size=32)  # random weights: no build happens
    ctx = BuildContext(loaded=loaded, device="cpu", workdir=tmp_path, threads=1)
    with pytest.raises(InputError, match="cannot run on cpu"):
        build("trt(fp16)", loaded, ctx)


@pytest.mark.skipif(
    HAS_TRT, reason="torch-tensorrt and CUDA are installed: the missing-dependency path is not reachable"
)
def test_missing_dependency_is_reported():
    with pytest.raises(MissingDependencyError) as err:
        require_torch_tensorrt()
    assert "pip install .[gpu]" in str(err.value) and "Dockerfile.cuda" in str(err.value)


@pytest.mark.skipif(
    HAS_TRT, reason="torch-tensorrt and CUDA are installed: the missing-dependency path is not reachable"
)
def test_cli_without_tensorrt_exits_2_with_one_line(cli, tmp_path):
    proc = cli(["optim.tensorrt", "--precision", "fp16", "--out", str(tmp_path / "v")])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pip install .[gpu]" in lines[0]
    assert not (tmp_path / "v").exists()


def test_cli_bad_precision_exits_2(cli):
    proc = cli(["optim.tensorrt", "--precision", "int4"])
    assert proc.returncode == 2 and "choose one of: fp16, int8" in proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs CUDA and torch-tensorrt (pip install .[gpu] or Dockerfile.cuda)")
def test_trt_fp16_matches_eager_and_reloads(tiny_loaded, tmp_path):
    from optim import Variant

    ctx = BuildContext(loaded=tiny_loaded, device="cuda", workdir=tmp_path, threads=1, options={"max_batch": 8})
    variant = build("trt(fp16)", tiny_loaded, ctx)
    x = torch.randn(4, *tiny_loaded.info.input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        eager = tiny_loaded.model.to("cuda")(x.cuda()).float().cpu()
    out = variant(x)
    # FP16 engines keep ~3 significant digits: logits of magnitude ~10 move by up to ~0.05.
    torch.testing.assert_close(out, eager, atol=0.1, rtol=0.02)
    variant.save(tmp_path / "v")
    torch.testing.assert_close(Variant.load(tmp_path / "v", device="cuda")(x), out, atol=1e-3, rtol=1e-3)
    entry = variant.manifest["steps"][-1]
    assert entry["gpu"] and entry["tensorrt"] and entry["engine_cache"]
