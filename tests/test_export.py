"""``python -m bench.export``: a measured variant as a folder that runs without optbench or timm, checked against the
predictions its sweep kept. One real sweep of the tiny trained checkpoint on digits (measurement processes, short
timing budgets, unpaired) is shared by the module; every command runs from a folder outside the checkout with
relative paths, as a user types it (``main`` in this process, or ``python -m bench.export``)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from optbench_testing import run_module

from bench.results_io import read_rows

RUN_ID = "exp"
RECIPES = ("fp32", "ptq(ort)", "ptq(ov)", "ptq(x86)", "prune(0.5)", "prune(0.5)+ov-int8")
DIGITS = [str(i) for i in range(10)]
# What each exported runtime writes as its model, by recipe.
MODEL_FILES = {
    "fp32": ["model.pt2"],
    "prune(0.5)": ["model.pt2"],
    "ptq(ort)": ["model.onnx"],
    "ptq(ov)": ["model.xml", "model.bin"],
    "ptq(x86)": ["model.pt2"],
    "prune(0.5)+ov-int8": ["model.xml", "model.bin"],
}


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``: the run directory must be byte-identical after any export."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sweep(ckpt, base: Path, run_id: str, recipes: tuple[str, ...], **changes) -> Path:
    """A sweep's run directory under ``base/results/runs``: every recipe built, saved, timed and evaluated in
    measurement processes of its own, as ``python -m bench`` does (with a tenth of the timing budget)."""
    from optbench_testing import tiny_config

    from bench.run.local import LocalExecutor
    from bench.run.sweep import run_sweep

    run_dir = base / "results" / "runs" / run_id
    run_dir.mkdir(parents=True)
    cfg = tiny_config(ckpt, recipes, run_id=run_id, paired=False, calib_size=128, **changes)
    (run_dir / "run_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    rows = run_sweep(cfg, run_dir, LocalExecutor(), progress=False)
    ok = {r["recipe"] for r in rows if r.get("status") == "ok"}
    assert set(recipes) <= ok, [(r["recipe"], r.get("error")) for r in rows if r.get("status") != "ok"]
    return run_dir


@pytest.fixture(scope="module")
def run(tiny_ckpt, tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    run_dir = sweep(tiny_ckpt, base, RUN_ID, RECIPES)
    return SimpleNamespace(dir=run_dir, base=base, before=tree_digest(run_dir))


@pytest.fixture
def export(run, run_in_process, monkeypatch):
    """``export(*args, cwd=...)``: ``python -m bench.export RUN_ID ...`` typed in ``cwd`` (default: the folder the
    sweep's results/ sits in, named relatively); returns (exit code, stdout, stderr)."""
    from bench.export.cli import main

    def call(*args: str, cwd: Path | None = None):
        monkeypatch.chdir(cwd or run.base)
        results = "results" if cwd is None else str(run.base / "results")
        return run_in_process(main, [RUN_ID, "--results", results, *args])

    return call


def test_default_variant_is_the_one_the_run_answered(run, export):
    from bench.report.answer import best_within_budget
    from bench.report.leaderboard import build_leaderboard

    rows = read_rows(run.dir / "results.jsonl")
    best = best_within_budget(build_leaderboard(rows, 1.0), "cpu")["variant"]
    code, out, err = export("--out", "answer")
    assert code == 0, err
    info = json.loads((run.base / "answer" / "export.json").read_text())
    assert info["recipe"] == best
    assert out.strip().endswith(str(run.base / "answer"))


@pytest.mark.parametrize("recipe", ["ptq(ov)", "prune(0.5)+ov-int8", "fp32", "prune(0.5)"])
def test_export_runs_alone_and_gives_the_measured_predictions(run, export, recipe):
    """--check-python: predict.py under this interpreter, with timm and optbench blocked, from a scratch folder."""
    from bench.run.process import safe_name

    code, out, err = export("--variant", recipe, "--check-python", sys.executable)
    assert code == 0, out + err
    assert "check passed" in out and "360/360 val images (100.00%)" in out
    speed = re.search(r"speed: batch-1 p50 ([0-9.e+-]+) ms here against ([0-9.e+-]+) ms in the sweep", out)
    assert speed and float(speed.group(1)) > 0 and float(speed.group(2)) > 0, out  # figures only: no timed verdict
    folder = run.base / f"{RUN_ID}-{safe_name(recipe)}"  # the default --out: ./<run-id>-<recipe>
    for name in [*MODEL_FILES[recipe], "predict.py", "serve.py", "preprocess.json", "labels.json", "MODEL_CARD.md"]:
        assert (folder / name).is_file(), name
    assert json.loads((folder / "labels.json").read_text()) == DIGITS
    manifest = json.loads((run.dir / "variants" / safe_name(recipe) / "cpu" / "manifest.json").read_text())
    runtime = "openvino" if "ov" in recipe else "torch"
    assert f"{runtime}=={manifest['versions'][runtime]}" in (folder / "requirements.txt").read_text().splitlines()
    card = (folder / "MODEL_CARD.md").read_text()
    assert manifest["source"]["sha256"] in card and "## Check" in card and "check passed" in card
    assert "AMD" in card or "Intel" in card or "CPU:" in card


def test_exported_pt2e_program_compiles_the_int8_fusions_it_was_measured_with(run, export):
    """The folder's loader, in a process of its own (no optbench, no quantizer imported by anyone else), compiles
    oneDNN's fused INT8 convolutions: without torchao's Inductor passes it ran slower than FP32."""
    from bench.run.process import safe_name

    code, out, err = export("--variant", "ptq(x86)", "--out", "x86")
    assert code == 0, out + err
    folder = run.base / "x86"
    probe = (
        "import numpy as np, predict\n"
        "from torch._dynamo.utils import counters\n"
        "c = predict.Classifier()\n"
        "c.logits([np.zeros((3, 32, 32), np.float32)])\n"
        "print(counters['inductor']['qconv_weight_prepack_matcher_count'])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 0, done.stdout
    assert safe_name("ptq(x86)") in {p.name for p in (run.dir / "variants").iterdir()}


def test_openvino_weights_are_kept_in_the_measured_precision(run, export, tmp_path):
    """The IR is copied as measured (compress_to_fp16=False), not saved again with FP16 weights."""
    folder = tmp_path / "ov"
    assert export("--variant", "ptq(ov)", "--out", "ov", cwd=tmp_path)[0] == 0
    measured = run.dir / "variants" / "ptq_ov_" / "cpu"
    for name in ("model.xml", "model.bin"):
        assert (folder / name).read_bytes() == (measured / name).read_bytes()
    assert 'element_type="f16"' not in (folder / "model.xml").read_text()


def test_ort_check_in_a_fresh_virtual_environment(run, tmp_path):
    """The real thing, as a subprocess: a new venv with only requirements.txt (onnxruntime, numpy, Pillow, web)."""
    args = ["bench.export", RUN_ID, "--variant", "ptq(ort)", "--out", "ort", "--check"]
    done = run_module([*args, "--results", str(run.base / "results")], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fresh virtual environment" in done.stdout and "360/360 val images (100.00%)" in done.stdout
    requirements = (tmp_path / "ort" / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("onnxruntime==") for line in requirements)
    assert not any(line.split("==")[0] in ("torch", "timm", "optbench") for line in requirements)


def test_the_check_blocks_optbench_and_timm(tmp_path):
    """The blocker the check runs predict.py under refuses timm and optbench's packages, and only those."""
    from bench.export.check import blocked_env

    env = blocked_env(tmp_path / "blocker", ("user_models",))
    for module in ("timm", "bench", "optim", "models", "data", "user_models"):
        done = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, cwd=tmp_path, capture_output=True)
        assert done.returncode != 0 and b"is blocked" in done.stderr, module
    done = subprocess.run([sys.executable, "-c", "import numpy, PIL"], env=env, cwd=tmp_path, capture_output=True)
    assert done.returncode == 0, done.stderr


def _config_of(folder: Path):
    from google.protobuf import text_format

    model_config_pb2 = pytest.importorskip(
        "tritonclient.grpc.model_config_pb2", reason="tritonclient (dev extra) parses Triton configs"
    )
    configs = list((folder / "triton").glob("*/config.pbtxt"))
    assert len(configs) == 1
    return configs[0].parent, text_format.Parse(configs[0].read_text(), model_config_pb2.ModelConfig())


def test_triton_repository_for_onnx_matches_the_model(export, tmp_path):
    import onnx

    assert export("--variant", "ptq(ort)", "--out", "ort", cwd=tmp_path)[0] == 0
    repo, config = _config_of(tmp_path / "ort")
    assert config.backend == "onnxruntime" and config.name == repo.name and config.max_batch_size >= 1
    graph = onnx.load(str(repo / "1" / "model.onnx")).graph
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:]
    assert config.input[0].name == graph.input[0].name and list(config.input[0].dims) == dims == [3, 32, 32]
    assert config.output[0].name == graph.output[0].name and list(config.output[0].dims) == [10]
    assert config.HasField("dynamic_batching") and config.instance_group[0].count >= 1


def test_triton_repository_for_openvino_matches_the_model(export, tmp_path):
    import openvino as ov

    assert export("--variant", "ptq(ov)", "--out", "ov", cwd=tmp_path)[0] == 0
    repo, config = _config_of(tmp_path / "ov")
    assert config.backend == "openvino"
    model = ov.Core().read_model(str(repo / "1" / "model.xml"))
    assert (repo / "1" / "model.bin").is_file()
    assert config.input[0].name == model.inputs[0].get_any_name()
    assert config.output[0].name in model.outputs[0].get_names()
    assert list(config.input[0].dims) == [d.get_length() for d in list(model.inputs[0].get_partial_shape())[1:]]
    assert list(config.output[0].dims) == [10]
    assert config.parameters["INFERENCE_NUM_THREADS"].string_value == "1"


def test_dockerfile_copies_only_files_the_folder_has(run):
    from bench.export.render import dockerfile_copies

    for folder in run.base.glob(f"{RUN_ID}-*"):
        text = (folder / "Dockerfile").read_text()
        assert text.startswith("FROM python:3.") and 'CMD ["python", "serve.py"]' in text
        copies = dockerfile_copies(text)
        assert "predict.py" in copies and all((folder / name).is_file() for name in copies), folder


def _copied_run(run, tmp_path: Path, rows: list[dict] | None = None, drop: str | None = None) -> Path:
    """A copy of the run under another results folder, optionally with extra rows or without a sub-folder."""
    results = tmp_path / "results"
    target = results / "runs" / RUN_ID
    shutil.copytree(run.dir, target)
    if rows:
        with open(target / "results.jsonl", "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    if drop:
        shutil.rmtree(target / drop)
    return results


def test_bad_input_is_one_line_and_leaves_the_run_alone(run, tmp_path, run_in_process, monkeypatch):
    from bench.export.cli import main

    failed = {"variant": "qat(x86)", "recipe": "qat(x86)", "device": "cpu", "status": "failed", "error": "boom"}
    skipped = {"variant": "ov(bf16)", "recipe": "ov(bf16)", "device": "cpu", "status": "skipped", "reason": "no AMX"}
    results = _copied_run(run, tmp_path, [failed, skipped])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    cases = {
        "no run 'nope'": ["nope"],
        "not a run name": ["../x"],
        "has no variant 'ptq(y)'": [RUN_ID, "--variant", "ptq(y)"],
        "qat(x86) failed": [RUN_ID, "--variant", "qat(x86)"],
        "ov(bf16) skipped": [RUN_ID, "--variant", "ov(bf16)"],
        "not empty": [RUN_ID, "--out", str(tmp_path / "full")],
        "inside the run directory": [RUN_ID, "--out", str(results / "runs" / RUN_ID / "x")],
    }
    before = tree_digest(results)
    for expected, args in cases.items():
        code, out, err = run_in_process(main, [*args, "--results", str(results)])
        assert code == 2, (expected, out, err)
        assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    monkeypatch.chdir(tmp_path / "full")
    code, _, err = run_in_process(main, [RUN_ID, "--out", ".", "--force", "--results", str(results)])
    assert code == 2 and "the current folder" in err, err
    monkeypatch.chdir(tmp_path)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert tree_digest(results) == before
    code, _, err = run_in_process(main, [RUN_ID, "--out", str(tmp_path / "full"), "--force", "--results", str(results)])
    assert code == 2 and "not an optbench export" in err, err  # --force never deletes a folder of the user's
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    code, _, err = run_in_process(main, [RUN_ID, "--out", str(tmp_path / "exp"), "--results", str(results)])
    assert code == 0, err
    (tmp_path / "exp" / "notes.txt").write_text("added by hand")
    code, _, err = run_in_process(main, [RUN_ID, "--out", str(tmp_path / "exp"), "--force", "--results", str(results)])
    assert code == 2 and "files the export did not write (notes.txt)" in err, err
    (tmp_path / "exp" / "notes.txt").unlink()
    (tmp_path / "exp" / "predict.py").write_text("edited by hand")
    code, _, err = run_in_process(main, [RUN_ID, "--out", str(tmp_path / "exp"), "--force", "--results", str(results)])
    assert code == 0, err  # an earlier export, its own files edited, is what --force replaces
    assert (tmp_path / "exp" / "predict.py").read_text() != "edited by hand"


def test_a_run_without_predictions_exports_but_cannot_be_checked(run, tmp_path, run_in_process):
    """A run of an older optbench kept no predictions: the folder is written, --check says so in one line (exit 2)."""
    from bench.export.cli import main

    results = _copied_run(run, tmp_path, drop="predictions")
    before = tree_digest(results)
    out = tmp_path / "old"
    code, _, err = run_in_process(main, [RUN_ID, "--variant", "ptq(ort)", "--out", str(out), "--results", str(results)])
    assert code == 0, err
    code, _, err = run_in_process(
        main, [RUN_ID, "--variant", "ptq(ort)", "--out", str(out), "--force", "--check", "--results", str(results)]
    )
    assert code == 2 and "cannot compare" in err and len(err.strip().splitlines()) == 1, err
    assert (out / "model.onnx").is_file() and tree_digest(results) == before


def test_the_run_directory_is_byte_identical_after_every_export(run):
    assert tree_digest(run.dir) == run.before


def _recorded_run(tmp_path: Path, recipe: str, load: dict, device: str) -> Path:
    """A run directory as a sweep on ``device`` leaves it, for a variant that cannot be built here (a TensorRT
    engine needs a GPU): rows, run_config.json and the variant's folder with its manifest and recorded sha256."""
    from optbench_testing import report_rows

    from bench.run.process import safe_name

    run_dir = tmp_path / "results" / "runs" / "rec"
    folder = run_dir / "variants" / safe_name(recipe) / device
    folder.mkdir(parents=True)
    engine = folder / "model.ep"
    engine.write_bytes(b"engine bytes")
    manifest = {
        "name": recipe,
        "recipe": recipe,
        "device": device,
        "source": {"arch": "resnet10t", "num_classes": 10, "checkpoint": "ckpt.pt", "sha256": "ab" * 32},
        "data_config": {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bilinear"},
        "versions": {"torch": "2.14.1", "torch-tensorrt": "2.14.0", "tensorrt": "11.1.0"},
        "load": load,
        "artifacts": {"model.ep": {"bytes": 12, "sha256": hashlib.sha256(b"engine bytes").hexdigest()}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    fingerprint = {"cpu_model": "Test CPU", "gpu_name": "NVIDIA T4", "python": "3.11.7", "threads": 2}
    rows = report_rows("fp32", 2.0, 99.0, 500.0) + report_rows(recipe, 0.5, 98.9, 4000.0)
    rows = [{**r, "device": device, "fingerprint": fingerprint} for r in rows]
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "run_config.json").write_text(json.dumps({"run_id": "rec", "device": device, "max_drop": 1.0}))
    return run_dir


def test_a_tensorrt_variant_gets_its_code_path_and_says_it_was_not_run(tmp_path, run_in_process, monkeypatch):
    """TensorRT cannot run here: the folder is written (engine, CUDA image, pinned TensorRT) and says so."""
    import py_compile

    from bench.export.cli import main

    load = {"kind": "tensorrt", "engine": "model.ep", "precision": "fp16", "gpu": "NVIDIA T4", "tensorrt": "11.1.0"}
    _recorded_run(tmp_path, "trt(fp16)", load, "cuda")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_in_process(main, ["rec", "--results", "results"])  # the answer: trt(fp16)
    assert code == 0, err
    folder = tmp_path / "rec-trt_fp16_"
    assert (folder / "model.ep").read_bytes() == b"engine bytes" and not (folder / "triton").exists()
    for name in ("predict.py", "serve.py"):
        py_compile.compile(str(folder / name), doraise=True)
    assert "import torch_tensorrt" in (folder / "predict.py").read_text()
    assert (folder / "Dockerfile").read_text().startswith("FROM nvidia/cuda:")
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert {"torch==2.14.1", "torch-tensorrt==2.14.0", "tensorrt==11.1.0"} <= set(requirements)
    card = (folder / "MODEL_CARD.md").read_text()
    assert "the TensorRT engine was not run" in card and "NVIDIA T4" in card
    if shutil.which("nvidia-smi") is None:
        code, _, err = run_in_process(main, ["rec", "--results", "results", "--force", "--check"])
        assert code == 2 and "cannot check a cuda variant" in err, err


def test_a_kind_without_an_exporter_is_one_line(tmp_path, run_in_process, monkeypatch):
    from bench.export.cli import main

    _recorded_run(tmp_path, "dynamic", {"kind": "dynamic-int8", "checkpoint": "model.pt"}, "cpu")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_in_process(main, ["rec", "--variant", "dynamic", "--results", "results"])
    assert code == 2 and "cannot be exported yet" in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("rec-*")) and not list(tmp_path.glob(".rec-*"))


def test_over_budget_variant_relative_interpreter_and_an_earlier_export(run, tmp_path, run_in_process, monkeypatch):
    """An over-budget variant is exported only with a warning and a card that says so; --check-python is read from
    the folder one runs in (the check itself runs elsewhere), checked before anything is written, and --check on an
    earlier export of the same variant checks it rather than refusing the folder."""
    import os

    from bench.export.cli import main

    results = _copied_run(run, tmp_path)
    rows = read_rows(results / "runs" / RUN_ID / "results.jsonl")
    for row in rows:
        if row.get("recipe") == "prune(0.5)" and row.get("status") == "ok":
            row["top1"] = 10.0  # 89 points under fp32: far over the run's 1-point budget
    (results / "runs" / RUN_ID / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    base = ["--results", "results", "--variant", "prune(0.5)", "--out", "pruned"]
    code, out, err = run_in_process(main, [RUN_ID, *base, "--check-python", "nowhere/python"])
    assert code == 2 and "--check-python" in err and "no such file" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "venv").mkdir()
    code, out, err = run_in_process(main, [RUN_ID, *base, "--check-python", "venv"])
    assert code == 2 and "is a folder; name its Python interpreter" in err
    assert not (tmp_path / "pruned").exists()  # refused before anything was written
    code, out, err = run_in_process(main, [RUN_ID, *base])
    assert code == 0, err
    assert "warning: prune(0.5) loses" in err and "over the run's 1-point budget" in err
    assert "**Over budget:** prune(0.5) loses" in (tmp_path / "pruned" / "MODEL_CARD.md").read_text()
    relative = os.path.relpath(sys.executable, tmp_path)
    code, out, err = run_in_process(main, [RUN_ID, *base, "--check", "--check-python", relative])
    assert "checking the export of prune(0.5) already in" in out, out + err
    assert code == 0 and "check passed" in out, out + err
