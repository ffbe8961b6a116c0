"""Your own checkpoint, end to end: every shape our users bring, through the commands they type.

Random weights in real formats (a plain state dict, timm's train script, Lightning with and without the arch, a
Hydra config, DDP, torch.compile, safetensors, a timm folder, a custom head through a factory) on a small, messy
ImageFolder. The first thing most users do is ``python -m bench my.pth --model ARCH``; these tests do exactly that
and look at the rows it wrote.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from optbench_testing import USER_ARCH, USER_CLASSES, image_folder, user_checkpoints


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    images = image_folder(root / "images")
    return images, user_checkpoints(root / "ckpts"), root / "ckpts"


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]


def _shape_args(user_files, name):
    images, files, folder = user_files
    path, options = files[name]
    return [str(path), *options, "--data", str(images), "--img-size", "32"], folder


def test_every_shape_loads_to_the_source_models_logits(user_files):
    """In-process, through the same option parser every command uses."""
    import timm

    from models.checkpoint import load
    from models.cli_args import load_spec

    _, files, folder = user_files
    torch.manual_seed(0)
    source = timm.create_model(USER_ARCH, pretrained=False, num_classes=USER_CLASSES).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = source(x)
    import sys

    sys.path.insert(0, str(folder))
    try:
        for name, (path, options) in files.items():
            opts = dict(zip(options[::2], options[1::2], strict=True))
            spec = load_spec(str(path), opts.get("--model"), opts.get("--model-kwargs"), img_size=32)
            loaded = load(spec)
            assert loaded.info.num_classes == USER_CLASSES, name
            with torch.no_grad():
                got = loaded.model(x)
            if name != "custom_head.ckpt":  # the custom head has its own random weights
                assert torch.allclose(got, expected, atol=1e-5), name
            assert loaded.info.input_size == (3, 32, 32), name
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("user_models", None)


def test_hydra_config_is_read_as_placeholders_and_gives_the_arch(user_files):
    from models.checkpoint import load

    _, files, _ = user_files
    loaded = load(files["lightning_hydra.ckpt"][0])
    assert loaded.info.arch == USER_ARCH  # from cfg.model.name inside the OmegaConf DictConfig
    assert any(name.startswith("omegaconf.") for name in loaded.info.placeholders)
    timm_train = load(files["timm_train.pth.tar"][0])
    assert timm_train.info.arch == USER_ARCH and "argparse.Namespace" in timm_train.info.placeholders
    folder = load(files["timm_folder"][0])
    assert folder.info.class_names == ("a", "b", "c") and folder.info.source_format == "timm-folder"


# Through one sweep file, each in worker processes: the custom head (factory imported in every worker) gets the
# full fp32 + ptq(ort) sweep (a builder, the paired reference); the others an fp32 sweep. The remaining layouts
# (nested EMA, Lightning with the arch, torch.compile, safetensors) load in-process above through the same code.
GRID_SHAPES = ("custom_head.ckpt", "plain.pth", "lightning_hydra.ckpt", "timm_train.pth.tar", "ddp.pt", "timm_folder")


def test_users_checkpoints_measure_in_workers_through_one_sweep_file(cli, user_files, tmp_path):
    images, files, folder = user_files
    lines = ['recipes = "fp32"', "quick = true", "rounds = 5", "replicas = 1", "threads = 1", f'data = "{images}"']
    lines.append("img-size = 32")
    for name in GRID_SHAPES:
        path, options = files[name]
        lines += ["[[checkpoint]]", f'path = "{path}"']
        lines += [
            f"{key.lstrip('-')} = {json.dumps(value)}" for key, value in zip(options[::2], options[1::2], strict=True)
        ]
        if name == "custom_head.ckpt":
            lines.append('recipes = "fp32,ptq(ort)"')
    grid = folder / "shapes.toml"
    grid.write_text("\n".join(lines) + "\n")
    proc = cli(["bench", "--sweep-file", str(grid), "--no-progress"], cwd=folder, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in GRID_SHAPES:
        run = tmp_path / "results" / "runs" / f"shapes-{name}"
        rows = _rows(run)
        expected = {"fp32", "ptq(ort)"} if name == "custom_head.ckpt" else {"fp32"}
        ok = {(r["recipe"], r["scenario"]) for r in rows if r["status"] == "ok"}
        assert ok == {(r, s) for r in expected for s in ("latency", "throughput")}, (name, rows)
        assert all(r.get("top1") is not None and r["num_classes"] == USER_CLASSES for r in rows), name
        assert json.loads((run / "run_config.json").read_text())["load"]["path"] == str(files[name][0])
    custom = _rows(tmp_path / "results" / "runs" / "shapes-custom_head.ckpt")
    ptq = next(r for r in custom if r["recipe"] == "ptq(ort)" and r["scenario"] == "latency")
    assert ptq["paired"]["rounds"] >= 5 and ptq["model"] == "user_models:build"
    assert _rows(tmp_path / "results" / "runs" / "shapes-lightning_hydra.ckpt")[0]["model"] == USER_ARCH
    assert "read as inert placeholders" in proc.stderr and "omegaconf" in proc.stderr
    again = cli(["bench", "--sweep-file", str(grid), "--no-progress"], cwd=folder, timeout=600)
    assert again.returncode == 0 and "already done" in again.stderr  # running the file again continues the grid


@pytest.mark.parametrize("name", ["plain.pth", "custom_head.ckpt"])
def test_quantize_command_on_the_users_checkpoint(cli, user_files, tmp_path, name):
    args, folder = _shape_args(user_files, name)
    out = tmp_path / "variant"
    proc = cli(["optim.quantize", *args, "--calib-size", "8", "--max-drop", "100", "--out", str(out)], cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["accuracy"]["within_budget"] and manifest["calibration"]["images"] == 8
    assert manifest["source"]["num_classes"] == USER_CLASSES


@pytest.mark.parametrize("name", ["plain.pth", "custom_head.ckpt"])
def test_pytest_bench_on_the_users_checkpoint(cli, user_files, tmp_path, name):
    args, folder = _shape_args(user_files, name)
    ckpt, rest = args[0], args[1:]
    out = tmp_path / "bench.json"
    from pathlib import Path

    suite = str(Path(__file__).resolve().parent.parent / "bench")
    cmd = ["pytest", suite, "-q", "-p", "no:cacheprovider", "--ckpt", ckpt, *rest, "--recipes", "fp32", "--quick"]
    proc = cli([*cmd, f"--benchmark-json={out}"], cwd=folder)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert {b["extra_info"]["scenario"] for b in data["benchmarks"]} == {"latency", "throughput"}
    assert all(b["extra_info"].get("top1") is not None for b in data["benchmarks"])
    assert data["optbench"]["num_classes"] == USER_CLASSES


FACTORY_BAD = [
    (["--model", "no_such_module:build"], "cannot import 'no_such_module'"),
    (["--model", "user_models:missing"], "has no attribute 'missing'"),
    (["--model", "user_models:not_a_model"], "returned a str, not a torch.nn.Module"),
    (["--model", "user_models:build", "--model-kwargs", "num_classes=5"], "does not fit"),
    (["--model", "user_models:build", "--model-kwargs", "wrong=1"], "calling it with"),
    (["--model", "resnet18"], "does not fit"),
]


@pytest.mark.parametrize("options,needle", FACTORY_BAD, ids=[n for _, n in FACTORY_BAD])
def test_factory_and_model_mistakes_are_one_line(run_in_process, user_files, options, needle, monkeypatch):
    from bench.cli import main

    images, files, folder = user_files
    monkeypatch.syspath_prepend(str(folder))
    code, _, err = run_in_process(main, [files["custom_head.ckpt"][0], *options, "--data", images, "--img-size", "32"])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0]


FAILING_STEPS = textwrap.dedent(
    """
    import dataclasses, os
    from optim.registry import MODULE, STEPS, register_step

    @register_step("raise-step", accepts=[MODULE], produces=MODULE)
    def raise_step(artifact, ctx):
        raise RuntimeError("boom: unsupported op in this test")

    def broken_fp32(artifact, ctx):
        raise RuntimeError("fp32 broke in this test")

    if os.environ.get("BREAK_FP32"):
        STEPS["fp32"] = dataclasses.replace(STEPS["fp32"], build=broken_fp32)
    """
)


def test_a_sweep_that_measured_no_variant_exits_1(cli, tiny_ckpt, tmp_path, install_plugin):
    install_plugin("failing_steps", FAILING_STEPS, ["raise-step"])
    run = [
        "bench",
        str(tiny_ckpt),
        "--recipes",
        "raise-step",
        "--quick",
        "--unpaired",
        "--run-id",
        "f",
        "--no-progress",
    ]
    proc = cli(run)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "failed: none of the 1 variant(s) besides fp32 was measured" in proc.stderr.splitlines()[-1]
    assert (tmp_path / "results" / "runs" / "f" / "leaderboard.md").is_file()  # still written


def test_a_sweep_whose_reference_failed_exits_1(cli, tiny_ckpt, tmp_path, install_plugin):
    install_plugin("failing_steps", FAILING_STEPS, ["raise-step"])
    run = ["bench", str(tiny_ckpt), "--recipes", "fp32,fp32-cl", "--quick", "--run-id", "g", "--no-progress"]
    proc = cli(run, env={"BREAK_FP32": "1"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "the fp32 reference was not measured" in proc.stderr.splitlines()[-1]
    rows = _rows(tmp_path / "results" / "runs" / "g")
    assert any(r["recipe"] == "fp32-cl" and r["status"] == "ok" and "measured unpaired" in r["note"] for r in rows)


WRONG_HEAD = textwrap.dedent(
    """
    import timm
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = timm.create_model("resnet10t", pretrained=False, num_classes=0)
            self.head = nn.Linear(100, 3)  # sized for another feature width: resnet10t gives 512

        def forward(self, x):
            return self.head(self.backbone(x))


    def build():
        return Net()
    """
)


@pytest.mark.parametrize("command", ["bench", "optim.quantize"])
def test_a_model_whose_forward_fails_is_one_line_naming_it(run_in_process, tmp_path, monkeypatch, command):
    """Typed from the user's own folder with relative paths: the model, the input shape and the error, exit 2."""
    import importlib
    import sys

    (tmp_path / "wrong_head.py").write_text(WRONG_HEAD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save({"state_dict": importlib.import_module("wrong_head").build().state_dict()}, tmp_path / "mine.pt")
    main = importlib.import_module("bench.cli" if command == "bench" else command).main
    try:
        code, _, err = run_in_process(main, ["mine.pt", "--model", "wrong_head:build"])
    finally:
        sys.modules.pop("wrong_head", None)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "wrong_head:build fails on an input of shape (1, 3, 176, 176)" in lines[0]
    assert "mat1 and mat2 shapes cannot be multiplied" in lines[0]
