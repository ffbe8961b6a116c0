"""CUDA paths, run where a GPU exists (marked `gpu`; skipped with the reason elsewhere)."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.gpu


def test_cuda_sweep_reports_device_only_and_end_to_end(cli, tiny_ckpt, tmp_path):
    proc = cli(
        [
            "bench",
            str(tiny_ckpt),
            "--device",
            "cuda",
            "--quick",
            "--recipes",
            "fp32,fp16,half",
            "--run-id",
            "g",
            "--no-progress",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in (tmp_path / "results" / "runs" / "g" / "results.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["status"] == "ok", row
        assert row["device_p50_ms"] > 0 and row["p50_ms"] > 0  # both timings, labelled
        assert "cuda_events" in row["device_timer"] and "synchronize" in row["timer"]
        assert row["max_memory_allocated_mb"] > 0
        assert row["fingerprint"]["gpu_name"] and row["fingerprint"]["gpu_sm_count"] > 0
        assert row["agreement"] > 95


def test_torchao_int8_on_cuda(tiny_loaded, tmp_path):
    pytest.importorskip("torchao")
    from optim import BuildContext, build

    loaded = tiny_loaded
    ctx = BuildContext(loaded=loaded, device="cuda", workdir=tmp_path / "v", threads=1)
    variant = build("torchao(int8-weight)", loaded, ctx)
    x = torch.randn(4, 3, 32, 32)
    import copy

    with torch.no_grad():
        reference = copy.deepcopy(loaded.model).to("cuda")(x.cuda()).float().cpu()
    out = variant(x)
    assert (out.argmax(1) == reference.argmax(1)).float().mean() >= 0.75


def test_end_to_end_host_batch_is_pinned():
    from bench.scenarios.batch import host_batch

    x = host_batch((3, 8, 8), 2, 0, "cuda")
    assert x.is_pinned() and x.device.type == "cpu"
    torch.testing.assert_close(x, host_batch((3, 8, 8), 2, 0, "cpu"))  # same seed, same data on both devices


@pytest.mark.parametrize("recipe", ["compile(reduce-overhead)", "compile(max-autotune,fp16,cudnn-convs)"])
def test_compiled_cuda_variants_match_eager(tiny_loaded, tmp_path, recipe):
    """CUDA graphs reuse their output buffers: two calls in a row must still give each input its own logits."""
    import copy

    from optim import BuildContext, build

    ctx = BuildContext(loaded=tiny_loaded, device="cuda", workdir=tmp_path / "v", threads=1)
    variant = build(recipe, tiny_loaded, ctx)
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(4, *tiny_loaded.info.input_size, generator=gen) for _ in range(2)]
    outs = [variant(x) for x in xs]
    model = copy.deepcopy(tiny_loaded.model).to("cuda").eval()
    with torch.inference_mode():
        refs = [model(x.cuda()).float().cpu() for x in xs]
    for out, ref in zip(outs, refs, strict=True):
        # fp16 autocast rounds activations to 11 bits: logits move by ~1e-2 on this tiny net.
        torch.testing.assert_close(out, ref, atol=5e-2, rtol=5e-2)
    assert not torch.equal(outs[0], outs[1])
