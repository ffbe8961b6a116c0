"""Quantization producers on the tiny resnet10t (digits, 32 px): build, save, load back, agree with FP32.

Agreement threshold: 95% top-1 agreement with FP32 on the 360 val images. INT8 with per-channel weights
measured 100% on this model (and on the 99.7% default); 95% leaves room for near-ties of a model trained
only 2 epochs (its logits margins are small) while still failing a broken quantizer, which lands near
chance (10%). The fallback test crafts a checkpoint that per-tensor activation quantization must break.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import models
from data.errors import InputError
from optim import BuildContext, Variant, build, parse
from optim.quantize import main as quantize_main

AGREEMENT = 95.0


def _ctx(loaded, tmp_path, calib_size=64, **options) -> BuildContext:
    import data

    cfg = data.LoaderConfig(batch_size=32, calib_size=calib_size, seed=0)
    return BuildContext(
        loaded=loaded,
        device="cpu",
        workdir=tmp_path / "work",
        threads=1,
        quick=True,
        calib_size=calib_size,
        data_factory=lambda: data.build("digits", loaded.info.data_config, cfg),
        options=dict(options),
    )


def _agreement(variant, loaded, loader) -> float:
    """Top-1 agreement with the FP32 model, at one batch size (a static-shape compiled variant compiles each)."""
    from optim.evaluate import fixed_batches

    same = total = 0
    with torch.inference_mode():
        for images, _, real in fixed_batches(loader, 32):
            same += int((variant(images)[:real].argmax(1) == loaded.model(images)[:real].argmax(1)).sum())
            total += real
    return 100.0 * same / total


def test_ptq_ort_cli_saves_a_variant_that_loads_in_a_new_process(tiny_ckpt, cli, cli_here, tmp_path):
    out = tmp_path / "ptq-ort"
    proc = cli(["optim.quantize", str(tiny_ckpt), "--backend", "ort", "--calib-size", "64", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    for words in ("size", "top-1", "latency", "vs eager FP32", "rough in-process check", "alternating blocks"):
        assert words in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"] == "ptq(ort)"
    assert manifest["source"]["sha256"] == models.file_sha256(tiny_ckpt)
    assert manifest["calibration"]["images"] == 64 and manifest["calibration"]["data_spec"] == "digits"
    step = manifest["steps"][-1]
    assert step["format"] == "QDQ" and step["activations"].startswith("uint8") and step["weights"].startswith("int8")
    assert step["export"]["parity"]["passed"]
    acc = manifest["accuracy"]
    assert acc["agreement"] >= AGREEMENT and acc["within_budget"] and "fp32_top1" in acc
    assert manifest["latency_quick"]["speedup"] > 0 and manifest["size_mb"] < manifest["size_fp32_mb"]
    assert manifest["build_s"] > 0 and "onnxruntime" in manifest["versions"]

    code = (
        "import json, sys, torch, models, data; from optim import Variant\n"
        f"v = Variant.load({str(out)!r}); loaded = models.load({str(tiny_ckpt)!r})\n"
        "val = data.build('digits', loaded.info.data_config).val\n"
        "same = total = 0\n"
        "with torch.inference_mode():\n"
        "    for x, _ in val:\n"
        "        same += int((v(x).argmax(1) == loaded.model(x).argmax(1)).sum()); total += len(x)\n"
        "print(json.dumps({'agreement': 100 * same / total}))\n"
    )
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-2000:]
    assert json.loads(check.stdout.strip().splitlines()[-1])["agreement"] >= AGREEMENT

    # Another recipe into the same folder is someone's work: one line, exit 2, the variant untouched.
    before = (out / "manifest.json").read_bytes()
    proc = cli_here(["optim.quantize", str(tiny_ckpt), "--backend", "ov", "--calib-size", "64", "--out", str(out)])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "holds ptq(ort) of" in proc.stderr and "--force" in proc.stderr
    assert (out / "manifest.json").read_bytes() == before


def test_ptq_x86_pinned_recipe_works_on_this_torch(tiny_loaded, tmp_path, monkeypatch):
    """Pins the PT2E recipe: torchao's X86InductorQuantizer + torch.compile under inductor freezing.

    torch 2.14 / torchao 0.18: ``torch.ao.quantization.quantize_pt2e`` is gone, and
    ``torch.compile(m, options={"freezing": True})`` fails on ``onednn.qconv_prepack``; patching
    ``torch._inductor.config.freezing`` around every call works and must leave the global config as it was.
    """
    import torch._inductor.compile_fx as compile_fx
    import torch._inductor.config as inductor_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: F401 - the pinned home
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer  # noqa: F401

    freezing_before, wrapper_before = inductor_config.freezing, inductor_config.cpp_wrapper
    compiled_with = []  # (batch, cpp_wrapper) of each graph Inductor compiled
    real_compile_fx = compile_fx.compile_fx

    def recording_compile_fx(graph, example_inputs, *args, **kwargs):
        batches = [t.shape[0] for t in example_inputs if isinstance(t, torch.Tensor) and t.dim() == 4]
        compiled_with.append((batches[0] if batches else None, inductor_config.cpp_wrapper))
        return real_compile_fx(graph, example_inputs, *args, **kwargs)

    monkeypatch.setattr(compile_fx, "compile_fx", recording_compile_fx)
    ctx = _ctx(tiny_loaded, tmp_path)
    variant = build("ptq(x86)", tiny_loaded, ctx)
    assert (inductor_config.freezing, inductor_config.cpp_wrapper) == (freezing_before, wrapper_before)
    # The build compiled batch 1; a caller's batch 1 (a normal tensor, not an inference tensor) must reuse that
    # graph. It once failed a dispatch-key guard and compiled everything again at the first timed call.
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    variant(torch.randn(1, 3, 32, 32))
    assert counters["stats"]["unique_graphs"] == graphs
    step = variant.manifest["steps"][-1]
    assert step["compiled"] is True and step["compile"] == "torch.compile + inductor freezing + cpp_wrapper at batch 1"
    # wrapper=auto: Inductor's C++ wrapper for batch 1, its Python one for a larger batch (faster there on AMX)
    variant(torch.randn(4, 3, 32, 32))
    assert compiled_with == [(1, True), (4, False)]
    assert (inductor_config.freezing, inductor_config.cpp_wrapper) == (freezing_before, wrapper_before)
    assert step["quantizer"].startswith("torchao X86InductorQuantizer")
    assert step["calibration"] == {"method": "histogram", "images": 64}
    graph_ops = {str(n.target) for n in variant.artifact.module.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in op for op in graph_ops)  # really INT8, not a silent FP32 graph
    assert _agreement(variant, tiny_loaded, ctx.data.val) >= AGREEMENT
    assert inductor_config.freezing == freezing_before

    saved = variant.save(tmp_path / "x86")
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["load"]["kind"] == "pt2e-x86" and (saved / "model.pt2").is_file()
    assert manifest["load"]["wrapper"] == "auto"  # the reload compiles the same way
    reloaded = Variant.load(saved)
    x = torch.randn(1, 3, 32, 32)  # the size the load compiled
    assert torch.equal(reloaded(x).argmax(1), variant(x).argmax(1))
    # A process that only loads the program (never imports the quantizer) compiles the same INT8 fusions: without
    # them every convolution ran as dequantize + FP32 conv + quantize, slower than FP32.
    fresh = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD, str(saved)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert int(fresh.stdout.split()[-1]) > 0, fresh.stdout


FRESH_LOAD = """
import sys, torch
from torch._dynamo.utils import counters
from optim.variant import Variant
Variant.load(sys.argv[1])(torch.randn(1, 3, 32, 32))
print(counters["inductor"]["qconv_weight_prepack_matcher_count"])
"""


def test_dynamic_quantizes_linear_layers_only_and_loads_back(tiny_loaded, tmp_path):
    ctx = _ctx(tiny_loaded, tmp_path)
    variant = build("dynamic", tiny_loaded, ctx)
    quantized = [n for n, m in variant.artifact.module.named_modules() if ".quantized." in type(m).__module__]
    assert {n.split(".")[0] for n in quantized} == {"fc"}  # resnet10t's only Linear; the convolutions stay FP32
    step = variant.manifest["steps"][-1]
    assert "ConvNets gain little" in step["note"] and 0 < step["linear_weight_share"] < 0.5
    assert _agreement(variant, tiny_loaded, ctx.data.val) >= AGREEMENT
    reloaded = Variant.load(variant.save(tmp_path / "dyn"))
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(reloaded(x), variant(x))


def _outlier_checkpoint(tiny_ckpt, path):
    """Same function in FP32, but one stem channel is 1000x larger: per-tensor INT8 activations collapse.

    BatchNorm conv1.1 scales channel 0 by K (ReLU is positively homogeneous) and conv1.3 divides the
    weights reading that channel by K, so FP32 logits are unchanged while the activation range feeding
    conv1.3 grows K-fold and every other channel falls into one or two uint8 levels.
    """
    loaded = models.load(tiny_ckpt)
    model, k = loaded.model, 1000.0
    with torch.no_grad():
        bn, conv = model.conv1[1], model.conv1[3]
        bn.weight[0] *= k
        bn.bias[0] *= k
        conv.weight[:, 0] /= k
    models.save(path, model, loaded.info)
    return path


def test_fallback_recovers_an_over_budget_ptq(tiny_ckpt, cli, tmp_path):
    ckpt = _outlier_checkpoint(tiny_ckpt, tmp_path / "outlier.pt")
    out = tmp_path / "fallback"
    proc = cli(
        ["optim.quantize", str(ckpt), "--backend", "ort", "--calib-size", "64", "--max-drop", "1", "--out", str(out)]
    )
    assert proc.returncode == 0, proc.stderr
    assert "trying" in proc.stdout and "fallback:" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    fallback = manifest["fallback"]
    tried = fallback["tried"]
    assert tried[0]["recipe"] == "ptq(ort)" and tried[0]["drop"] > 1  # the plain recipe really missed the budget
    assert len(tried) >= 2 and fallback["winner"] == manifest["recipe"] == tried[-1]["recipe"]
    assert manifest["accuracy"]["within_budget"] is True
    assert manifest["accuracy"]["drop"] <= 1.0
    if "keep=" in manifest["recipe"]:
        assert manifest["steps"][-1]["fp32_nodes"]  # layers really left in FP32, named in the manifest


def test_over_budget_is_reported_never_hidden(tiny_ckpt, cli, tmp_path):
    ckpt = _outlier_checkpoint(tiny_ckpt, tmp_path / "outlier.pt")
    out = tmp_path / "over"
    # Plain ORT INT8 misses any budget on this checkpoint, so the fallbacks run; whichever one the search ends on,
    # the saved verdict must follow its measured drop and an over-budget result must be printed as such.
    proc = cli(["optim.onnx", str(ckpt), "--int8", "--calib-size", "64", "--max-drop", "0", "--out", str(out)])
    manifest = json.loads((out / "manifest.json").read_text())
    acc = manifest["accuracy"]
    assert manifest["fallback"]["tried"][0]["drop"] > 0
    assert acc["within_budget"] is (acc["drop"] <= 0)
    assert acc.get("verdict") == (None if acc["within_budget"] else "over budget")
    assert ("OVER BUDGET" in proc.stdout) is (not acc["within_budget"])
    # `quantize && deploy` never ships an over-budget variant: exit 1, one line saying why, the variant kept.
    assert proc.returncode == (0 if acc["within_budget"] else 1), proc.stderr
    if not acc["within_budget"]:
        assert proc.stderr.strip().splitlines()[-1].startswith("over budget: no candidate kept top-1 within 0 points")


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("ptq(foo)", "unknown ptq backend"),
        ("ptq(x86,calib=entropy)", "unknown ptq calib 'entropy'; choose one of: histogram, minmax"),
        ("ptq(ort,calib=histogram)", "unknown ptq calib 'histogram'; choose one of: minmax,"),
        ("ptq(ort,keep=abc)", "keep must be ends"),
        ("ptq(ort,wrapper=cpp)", "unknown ptq argument 'wrapper'; known: calib, keep, opset, slim"),
        ("ptq(x86,wrapper=java)", "unknown ptq wrapper 'java'"),
        ("qat(tensorrt)", "unknown qat backend"),
        ("qat(x86,epochs=0)", "epochs must be positive"),
        ("dynamic(1)", "takes no arguments"),
        ("ptq(ort)+ptq(ort)", "cannot run after"),
    ],
)
def test_bad_recipes_fail_at_parse_time(recipe, message):
    with pytest.raises(InputError, match=message):
        parse(recipe)


def test_recipes_and_aliases_parse():
    assert str(parse("ptq(ort,calib=entropy,keep=ends+2)")) == "ptq(ort,calib=entropy,keep=ends+2)"
    assert parse("ort-int8").steps[0].args["backend"] == "ort"
    assert parse("qat(x86,epochs=2)").steps[0].args["epochs"] == 2
    assert parse("ptq(x86,wrapper=python)").steps[0].args["wrapper"] == "python"


def test_fallbacks_keep_the_backend_options_the_recipe_wrote():
    plan = [recipe for recipe, _ in parse("prune(0.5)+ptq(x86,wrapper=python)").fallbacks()]
    assert plan[:2] == [
        "prune(0.5)+ptq(x86,wrapper=python,calib=minmax)",
        "prune(0.5)+ptq(x86,wrapper=python,keep=ends)",
    ]
    assert [r for r, _ in parse("ptq(ort,calib=entropy,keep=ends)").fallbacks()][:2] == [
        "ptq(ort,calib=percentile)",
        "ptq(ort)",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "tensorrt"], "pip install .[gpu]"),
        (["--backend", "bogus"], "unknown ptq backend 'bogus'; choose one of"),
        (["--calib-size", "100000"], "larger than the train split"),
        (["--method", "dynamic", "--backend", "ort"], "takes no --backend"),
        (["--max-drop", "-1"], "--max-drop must be >= 0"),
        (["--data", "/no/such/folder"], "data folder not found"),
    ],
)
def test_quantize_cli_bad_input_exits_2_with_one_line(run_in_process, tiny_ckpt, tmp_path, args, message):
    out = tmp_path / "never"
    code, _, err = run_in_process(quantize_main, [tiny_ckpt, *args, "--out", out])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert not out.exists()


def test_bad_checkpoint_exits_2(run_in_process, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code, _, err = run_in_process(quantize_main, [bad])
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_existing_results_survive_a_failed_run(run_in_process, tiny_ckpt, tmp_path):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_in_process(quantize_main, [tiny_ckpt, "--backend", "ort", "--out", out])
    assert code == 2 and "not a variant directory" in err
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_qat_ort_fine_tunes_and_exports_qdq(tiny_loaded, tmp_path):
    ctx = _ctx(tiny_loaded, tmp_path)
    variant = build("qat(ort)", tiny_loaded, ctx)
    step = variant.manifest["steps"][-1]
    assert step["finetune"]["split"] == "train" and step["finetune"]["max_steps_per_epoch"] == 8
    assert step["export"]["parity"]["passed"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(variant.artifact.onnx_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert _agreement(variant, tiny_loaded, ctx.data.val) >= AGREEMENT
    reloaded = Variant.load(variant.save(tmp_path / "qat"))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(reloaded(x), variant(x))


@pytest.mark.gpu
def test_ptq_tensorrt_on_gpu(tiny_loaded, tmp_path):
    pytest.importorskip("torch_tensorrt", reason="needs torch-tensorrt (pip install .[gpu] or Dockerfile.cuda)")
    import data

    cfg = data.LoaderConfig(batch_size=32, calib_size=64, seed=0)
    ctx = BuildContext(
        loaded=tiny_loaded,
        device="cuda",
        workdir=tmp_path / "trt",
        threads=1,
        quick=True,
        calib_size=64,
        data_factory=lambda: data.build("digits", tiny_loaded.info.data_config, cfg),
        options={"throughput_batch": 32},
    )
    variant = build("ptq(tensorrt)", tiny_loaded, ctx)
    assert variant.manifest["steps"][-1]["gpu"]
    assert _agreement(variant, tiny_loaded, ctx.data.val) >= AGREEMENT
