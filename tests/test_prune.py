"""Structured pruning: channels really go, the pruned model reloads safely and fine-tuning keeps top-1."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

import models
from data.errors import CheckpointError, InputError
from models.pruned import channel_summary, rebuild_pruned
from optim import BuildContext, Variant, build, parse


def _ctx(loaded, tmp_path, quick: bool = True) -> BuildContext:
    import data

    info = loaded.info
    return BuildContext(
        loaded=loaded,
        device="cpu",
        workdir=tmp_path / "work",
        threads=torch.get_num_threads(),
        quick=quick,
        data_factory=lambda: data.build(info.data_spec or "digits", info.data_config, data.LoaderConfig(batch_size=32)),
    )


def _batch(loaded, n: int = 4) -> torch.Tensor:
    c, h, w = loaded.info.input_size
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def pruned_dir(tiny_ckpt, tmp_path_factory):
    """prune(0.5) without fine-tuning, built once and saved; logits of the in-memory variant kept for comparison."""
    loaded = models.load(tiny_ckpt)
    out = tmp_path_factory.mktemp("pruned")
    variant = build("prune(0.5,finetune=0)", loaded, _ctx(loaded, out))
    x = _batch(loaded)
    logits = variant(x)
    variant.save(out / "variant")
    return out / "variant", variant, loaded, x, logits


def test_pruning_removes_channels_and_records_macs(pruned_dir):
    _, variant, loaded, _, _ = pruned_dir
    before, after = channel_summary(loaded.model), channel_summary(variant.artifact.module)
    assert after["conv_out_channels"] < 0.75 * before["conv_out_channels"]  # ratio 0.5 removes about half
    assert after["linear_out_features"] == before["linear_out_features"]  # the classifier is never pruned
    entry = variant.manifest["steps"][0]
    assert entry["step"] == "prune(0.5,finetune=0)"
    assert entry["macs_after"] < entry["macs_before"] and entry["params_after"] < entry["params_before"]
    assert set(entry["speed_check"]) == {"b1", "b16"} and entry["speed_check"]["b16"]["speedup"] > 0
    widths = [m.out_channels for m in variant.artifact.module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths if w >= 8)  # round_to=8


def test_saved_pruned_model_loads_weights_only_and_matches(pruned_dir):
    directory, variant, _, x, logits = pruned_dir
    raw = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)  # no pickled modules inside
    assert raw["pruned_layers"] and all(isinstance(v, dict) for v in raw["pruned_layers"].values())
    reloaded = models.load(directory / "model.pt")
    assert reloaded.info.pruned_layers == raw["pruned_layers"]
    with torch.inference_mode():
        again = reloaded.model(x)
    # Same weights and the same FP32 kernels on the same shapes: only summation order could differ, so the
    # logits agree to float32 rounding (1e-5 on logits of magnitude ~10).
    torch.testing.assert_close(again, logits, atol=1e-5, rtol=1e-5)
    assert (again.argmax(1) == logits.argmax(1)).all()


def test_pruned_variant_loads_in_a_new_process(pruned_dir, tmp_path):
    directory, _, _, x, logits = pruned_dir
    torch.save(x, tmp_path / "x.pt")
    code = textwrap.dedent(
        f"""
        import torch
        from optim import Variant
        v = Variant.load({str(directory)!r})
        x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
        torch.save(v(x), {str(tmp_path / "y.pt")!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    torch.testing.assert_close(torch.load(tmp_path / "y.pt", weights_only=True), logits, atol=1e-5, rtol=1e-5)


def test_pruned_then_channels_last_chain_reloads(tiny_loaded, tmp_path):
    """A later step's save hook must still record the pruned widths (prune(...)+fp32-cl)."""
    variant = build("prune(0.5,finetune=0)+fp32-cl", tiny_loaded, _ctx(tiny_loaded, tmp_path))
    x = _batch(tiny_loaded)
    expected = variant(x)
    variant.save(tmp_path / "v")
    loaded = Variant.load(tmp_path / "v")
    torch.testing.assert_close(loaded(x), expected, atol=1e-5, rtol=1e-5)


def test_finetune_keeps_top1_close(tiny_ckpt, tmp_path):
    """prune(0.3) + a quick fine-tune (2 epochs capped at 20 steps each) on the 2-epoch tiny checkpoint.

    Without fine-tuning, prune(0.3) of resnet10t drops digits top-1 to chance (measured 10% on the trained
    default: round_to=8 halves the narrow stem layers), so this test sees whether fine-tuning works at all.
    40 steps recover most of it (measured 94% after 20 steps on the default). 10 points (36 of 360 val
    images) separates "fine-tune recovers" from "broken" (near 10%) with margin for run-to-run noise; the
    1-point target of the issue is for the full default (2 full epochs on the fully trained model, measured
    -0.55 points).
    """
    from models.train import evaluate

    loaded = models.load(tiny_ckpt)
    ctx = _ctx(loaded, tmp_path, quick=True)
    variant = build("prune(0.3)", loaded, ctx)
    entry = variant.manifest["steps"][0]
    assert entry["finetune"]["epochs"] == 2 and entry["finetune"]["split"] == "train"
    before = evaluate(loaded.model, ctx.data.val)
    after = evaluate(variant.artifact.module, ctx.data.val)
    assert after >= before - 10.0, (before, after)


def test_taylor_importance_with_iterative_steps(tiny_loaded, tmp_path):
    variant = build("prune(0.4,importance=taylor,steps=2,finetune=0)", tiny_loaded, _ctx(tiny_loaded, tmp_path))
    entry = variant.manifest["steps"][0]
    assert entry["config"]["importance"] == "taylor" and entry["config"]["steps"] == 2
    assert entry["params_after"] < entry["params_before"]


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("prune(0)", "in (0, 1)"),
        ("prune(1)", "in (0, 1)"),
        ("prune(-0.2)", "in (0, 1)"),
        ("prune(1.5)", "in (0, 1)"),
        ("prune", "needs a ratio"),
        ("prune(abc)", "must be a number"),
        ("prune(0.5,importance=l1)", "magnitude, taylor, bn-scale"),
        ("prune(0.5,steps=0)", "steps must be"),
        ("prune(0.5,distill=2)", "distill must be"),
        ("prune(0.5,foo=1)", "unknown prune argument"),
    ],
)
def test_bad_prune_arguments_fail_at_parse(recipe, message):
    with pytest.raises(InputError, match=None) as err:
        parse(recipe)
    assert message in str(err.value) and "prune(" in str(err.value)


@pytest.mark.parametrize("ratio", ["0", "1.0"])
def test_cli_bad_ratio_exits_2(cli_here, tiny_ckpt, ratio):
    proc = cli_here(["optim.prune", str(tiny_ckpt), "--ratio", ratio])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ratio must be in (0, 1)" in lines[0]


def test_cli_prunes_and_reports(cli, tiny_ckpt, tmp_path):
    out = tmp_path / "variant"
    proc = cli(["optim.prune", str(tiny_ckpt), "--ratio", "0.5", "--finetune-epochs", "0", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MACs" in proc.stdout and "params" in proc.stdout and "top-1" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "prune(0.5,finetune=0)" and manifest["load"]["kind"] == "eager"
    assert manifest["steps"][0]["macs_after"] < manifest["steps"][0]["macs_before"]
    assert models.load(out / "model.pt").info.pruned_layers


def test_unsupported_model_fails_naming_the_layer(tmp_path):
    """test_vit3 pools with latent attention that reshapes to a fixed width: the forward breaks after the cut."""
    loaded = models.load(None, arch="test_vit3", num_classes=10)
    ctx = BuildContext(loaded=loaded, device="cpu", workdir=tmp_path, threads=1)
    with pytest.raises(InputError) as err:
        build("prune(0.5,finetune=0)", loaded, ctx)
    message = str(err.value)
    assert "cannot prune test_vit3" in message and "attn_pool" in message


def test_vit_from_a_plain_state_dict_prunes_head_widths_and_reloads(cli, tmp_path):
    """A user's ViT (plain state dict + --model): every head keeps its place but gets narrower, and the saved
    variant reloads weights-only with the same head layout and softmax scale as the pruned model."""
    torch.save(models.create_model("test_vit", 10).state_dict(), tmp_path / "vit.pth")
    out = tmp_path / "variant"
    argv = ["optim.prune", str(tmp_path / "vit.pth"), "--model", "test_vit", "--num-classes", "10", "--ratio", "0.5"]
    proc = cli([*argv, "--finetune-epochs", "0", "--no-eval", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    entry = json.loads((out / "manifest.json").read_text())["steps"][0]
    assert entry["macs_after"] < 0.6 * entry["macs_before"]
    saved = models.load(out / "model.pt")  # weights-only, rebuilt from the recorded widths
    model = saved.model.eval()
    attention = [block.attn for block in model.blocks]
    assert {(a.num_heads, a.head_dim, a.attn_dim) for a in attention} == {(2, 16, 32)}
    assert all(a.scale == 16**-0.5 for a in attention)
    x = torch.randn(2, *saved.info.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fused = model(x)
        for a in attention:
            a.fused_attn = False  # the explicit path multiplies by `scale`: it must equal what SDPA uses
        explicit = model(x)
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-4)


def test_rebuild_rejects_records_that_do_not_fit(tiny_loaded):
    model = models.create_model("resnet10t", 10)
    with pytest.raises(CheckpointError, match="does not exist"):
        rebuild_pruned(model, {"no.such.layer": {"type": "Conv2d", "attrs": {}, "tensors": {}}})
    with pytest.raises(CheckpointError, match="was a Linear"):
        rebuild_pruned(model, {"conv1.0": {"type": "Linear", "attrs": {}, "tensors": {}}})


def test_batchnorm_statistics_are_recomputed_after_the_fine_tune():
    """A short fine-tune leaves running statistics that describe the unpruned network (eval fell to chance on a
    small ImageFolder while the train loss looked recovered): they are recomputed on train images, only the
    BatchNorm layers in train mode, and the rest of the model left as it was."""
    from torch import nn

    from optim.backends.batchnorm import recalibrate_batchnorm

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Dropout(0.5)).eval()
    model[1].running_mean.fill_(100.0)  # stale: far from what the layer sees now
    model[1].running_var.fill_(1e-3)
    images = [(torch.randn(8, 3, 4, 4) * 2 + 1, torch.zeros(8)) for _ in range(4)]
    done = recalibrate_batchnorm(model, images, "cpu", images=16)
    assert done == {"layers": 1, "images": 16, "split": "train"}
    with torch.no_grad():
        seen = model[0](torch.cat([x for x, _ in images[:2]]))
    torch.testing.assert_close(model[1].running_mean, seen.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert model[1].momentum == 0.1 and not model.training and not model[1].training and not model[2].training
