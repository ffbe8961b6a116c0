"""torch.compile variants: argument parsing, Inductor state restored, parity with eager and reload from disk.

torch.compile on a shared 2-core box is slow, so the whole file compiles twice: once in-process (build) and
once in a fresh process (load from disk, which reuses the variant's Inductor cache).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from data.errors import InputError
from optim import BuildContext, build, parse
from optim.backends.inductor import CompileConfig, inductor_settings
from optim.compile import bf16_note


@pytest.mark.parametrize(
    "args, expected",
    [
        ((), {}),
        (("max-autotune",), {"mode": "max-autotune"}),
        (("bf16",), {"bf16": True}),
        (("default", "no-freezing"), {"mode": "default", "freezing": False}),
        (("freezing", "bf16"), {"freezing": True, "bf16": True}),
        (("max-autotune", "fp16"), {"mode": "max-autotune", "fp16": True}),
        (("max-autotune", "cudnn-convs"), {"mode": "max-autotune", "cudnn_convs": True}),
    ],
)
def test_parse_compile_args(args, expected):
    recipe = f"compile({','.join(args)})" if args else "compile"
    assert parse(recipe).steps[0].args == expected


@pytest.mark.parametrize(
    "recipe",
    ["compile(fast)", "compile(default,max-autotune)", "compile(freezing,no-freezing)", "compile(bf16,fp16)"],
)
def test_bad_compile_arguments_fail_at_parse(recipe):
    with pytest.raises(InputError) as err:
        parse(recipe)
    assert recipe in str(err.value)


def test_freezing_defaults_by_device():
    assert CompileConfig().resolved_freezing("cpu") is True
    assert CompileConfig().resolved_freezing("cuda") is False
    assert CompileConfig(freezing=False).resolved_freezing("cpu") is False


def test_inductor_settings_restore_global_state(tmp_path, monkeypatch):
    import torch._inductor.config as inductor_config

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    before = inductor_config.freezing
    with inductor_settings(tmp_path / "cache", freezing=not before):
        assert inductor_config.freezing is (not before)
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache")
    assert inductor_config.freezing is before
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    backends = inductor_config.max_autotune_conv_backends
    with inductor_settings(tmp_path / "cache", freezing=before, cudnn_convs=True):
        assert inductor_config.max_autotune_conv_backends == "ATEN"
    assert inductor_config.max_autotune_conv_backends == backends


def test_bf16_note_matches_cpu_flags():
    from models.machine import cpu_info

    native = bool({"avx512_bf16", "amx_bf16"} & set(cpu_info()["cpu_flags"]))
    assert (bf16_note("cpu") is None) is native


def test_each_batch_size_gets_its_own_static_graph(tmp_path):
    """Two batch sizes must not turn the batch dimension symbolic: max-autotune and CUDA graphs want fixed shapes."""
    from torch._dynamo.utils import counters

    from optim.backends.inductor import compile_runtime

    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
    predict, prepare, _ = compile_runtime(model, "cpu", CompileConfig(freezing=False), tmp_path / "cache")
    counters.clear()
    for batch in (1, 2, 3, 2):
        x = torch.randn(batch, 8)
        with torch.inference_mode():
            expected = model(x)
        torch.testing.assert_close(predict(prepare(x)), expected)
    # Automatic dynamic shapes would compile batch 1, then one symbolic graph for 2 and 3: two graphs.
    assert counters["stats"]["unique_graphs"] == 3


def test_compile_matches_eager_and_reloads_in_new_process(tiny_loaded, tmp_path):
    workdir = tmp_path / "variant"
    ctx = BuildContext(loaded=tiny_loaded, device="cpu", workdir=workdir, threads=torch.get_num_threads())
    variant = build("compile", tiny_loaded, ctx)
    entry = variant.manifest["steps"][-1]
    assert entry["config"]["freezing"] is True and entry["compile_s"] > 0
    assert Path(entry["inductor_cache"]).is_dir() and not (workdir / "inductor-cache").exists()
    assert sum(entry["inductor_cache_lookups"].values()) >= 1  # freezing: bypassed, but counted

    x = torch.randn(4, *tiny_loaded.info.input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        eager = tiny_loaded.model(x)
    compiled = variant(x)
    # Freezing folds BatchNorm into the convolutions and Inductor fuses and reorders FP32 arithmetic: logits
    # (magnitude ~10) move by float32 rounding, ~1e-5 relative. 1e-3 absolute leaves margin and is still far
    # below any real bug (a wrong layer or dropped op shifts logits by >0.1 and changes predictions).
    torch.testing.assert_close(compiled, eager, atol=1e-3, rtol=1e-3)
    assert (compiled.argmax(1) == eager.argmax(1)).all()

    variant.save(workdir)
    assert variant.manifest["load"]["kind"] == "compile" and "rebuild" in variant.manifest["load"]["note"]
    torch.save(x, tmp_path / "x.pt")
    code = textwrap.dedent(
        f"""
        import torch
        from optim import Variant
        v = Variant.load({str(workdir)!r})
        x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
        torch.save(v(x), {str(tmp_path / "y.pt")!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    torch.testing.assert_close(torch.load(tmp_path / "y.pt", weights_only=True), eager, atol=1e-3, rtol=1e-3)


def test_cli_rejects_unknown_mode(cli_here):
    proc = cli_here(["optim.compile", "--mode", "turbo"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown compile mode 'turbo'; choose one of: default, max-autotune, reduce-overhead"
    ]


def test_the_accuracy_pass_at_a_timed_batch_compiles_nothing_more(tmp_path):
    """Its batches must pass the compiled graph's guards: an inference-mode tensor does not, and recompiled."""
    from torch._dynamo.utils import counters
    from torch.utils.data import DataLoader, TensorDataset

    from optim.backends.inductor import compile_runtime
    from optim.evaluate import evaluate_variant

    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
    predict, prepare, _ = compile_runtime(model, "cpu", CompileConfig(freezing=False), tmp_path / "cache")
    predict(prepare(torch.randn(4, 8)))  # the warm-up of a timed batch of 4
    counters.clear()
    loader = DataLoader(TensorDataset(torch.randn(10, 8), torch.randint(0, 4, (10,))), batch_size=3)
    metrics, preds = evaluate_variant(lambda x: predict(prepare(x)), loader, batch_size=4)
    assert metrics["val_images"] == 10 and preds.shape == (10,)
    assert counters["stats"]["unique_graphs"] == 0, dict(counters["stats"])
