"""The CLIs as a user runs them: one-line errors with exit code 2, and a real end-to-end run."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import models


def _one_line_error(proc):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"optimizer": {"lr": 1}}, root / "no_weights.pt")
    torch.save(models.create_model("resnet10t", 10).state_dict(), root / "plain.pt")
    (root / "empty_folder" / "train").mkdir(parents=True)
    return root


@pytest.mark.parametrize(
    "args,needle",
    [
        (["missing.pt"], "not found"),
        (["{root}/garbage.pt"], "not a torch checkpoint"),
        (["{root}/no_weights.pt"], "without model weights"),
        (["{root}/plain.pt"], "--model"),
        (["{root}/plain.pt", "--model", "resnet_nope"], "unknown timm architecture"),
        (["{root}/plain.pt", "--model", "resnet10t", "--num-classes", "3"], "has 10 classes"),
        (["{root}/plain.pt", "--model", "resnet10t", "--data", "{root}/empty_folder"], "train/ and val/"),
        (["{root}/plain.pt", "--model", "resnet10t", "--data", "mnist-please"], "unknown data spec"),
        (["{root}/plain.pt", "--model", "resnet10t", "--recipes", "fp32,warp-speed"], "unknown recipe step"),
        (["{root}/plain.pt", "--model", "resnet10t", "--device", "tpu"], "unknown device"),
        (["{root}/plain.pt", "--model", "resnet10t", "--threads", "0"], "--threads must be positive"),
        (["{root}/plain.pt", "--model", "resnet10t", "--rounds", "2"], "--rounds must be >= 5"),
        (["{root}/plain.pt", "--model", "resnet10t", "--replicas", "0"], "--replicas must be positive"),
        (["{root}/plain.pt", "--model", "resnet10t", "--precise", "--quick"], "exclude each other"),
        (["{root}/plain.pt", "--model", "resnet10t", "--precise", "--unpaired"], "nothing with --unpaired"),
        (["--resume", "no-such-run"], "cannot resume"),
        (["--bogus-flag"], "unrecognized arguments"),
    ],
)
def test_bench_bad_input_exits_2_with_one_line(bad_files, args, needle, capsys):
    """In-process through run_cli (what `python -m bench` runs); one case below also goes through a real process."""
    from bench.cli import main
    from data.errors import run_cli

    args = [a.format(root=bad_files) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, args)
    captured = capsys.readouterr()
    proc = subprocess.CompletedProcess(args, exit_info.value.code, captured.out, captured.err)
    assert needle in _one_line_error(proc)


def test_bad_input_through_a_real_process(cli, bad_files):
    assert "not a torch checkpoint" in _one_line_error(cli(["bench", str(bad_files / "garbage.pt")]))


def test_device_cuda_without_gpu(cli, bad_files):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    line = _one_line_error(cli(["bench", str(bad_files / "plain.pt"), "--model", "resnet10t", "--device", "cuda"]))
    assert "no CUDA device" in line


def test_train_bad_input(cli_here, tmp_path):
    assert "unknown timm architecture" in _one_line_error(
        cli_here(["models.train", "--model", "nope_net", "--out", str(tmp_path / "x.pt")])
    )
    assert "Similar timm names: resnet10t" in _one_line_error(  # a name one letter short is suggested first
        cli_here(["models.train", "--model", "resnet10", "--out", str(tmp_path / "x.pt")])
    )
    assert "--epochs must be positive" in _one_line_error(
        cli_here(["models.train", "--model", "resnet10t", "--epochs", "0", "--out", str(tmp_path / "x.pt")])
    )


def test_train_checks_its_options_before_training(run_in_process, tmp_path):
    from models.train import main

    (tmp_path / "notes.md").write_text("mine")
    for extra, needle in [
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--seed", "-5"], "--seed must be in"),
        (["--img-size", "0"], "--img-size must be positive"),
        (["--img-size", "4"], "smaller than the model's total stride"),
        (["--out", str(tmp_path / "notes.md")], "exists; pass --force"),  # never a user's file replaced silently
        (["--out", str(tmp_path)], "is a folder"),
    ]:
        out = [] if "--out" in extra else ["--out", str(tmp_path / "x.pt")]
        code, _, err = run_in_process(main, ["--model", "resnet10t", *out, *extra])
        assert code == 2 and err.count("\n") == 1 and needle in err, (extra, err)
    assert (tmp_path / "notes.md").read_text() == "mine" and not (tmp_path / "x.pt").exists()


def test_one_epoch_of_training_beats_chance_by_far(cli, tmp_path):
    out = tmp_path / "one.pt"
    proc = cli(["models.train", "--model", "resnet10t", "--data", "digits", "--epochs", "1", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    loaded = models.load(out)
    assert loaded.info.metrics["val_top1"] > 50  # chance is 10%
    assert loaded.info.data_config["input_size"] == [3, 32, 32] and loaded.info.class_names[0] == "0"


def test_bench_end_to_end_writes_rows_and_leaderboard(cli, tiny_ckpt, tmp_path):
    proc = cli(
        ["bench", str(tiny_ckpt), "--quick", "--recipes", "fp32", "--run-id", "e2e", "--no-progress", "--threads", "1"]
    )
    assert proc.returncode == 0, proc.stderr
    assert "fastest within 1-point top-1 budget on cpu: fp32" in proc.stdout
    run = tmp_path / "results" / "runs" / "e2e"
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert {r["scenario"] for r in rows} == {"latency", "throughput"}
    assert all(r["status"] == "ok" and r["top1"] > 50 for r in rows)
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.html", "run_config.json"):
        assert (run / name).stat().st_size > 0


def test_import_bench_does_not_initialise_cuda():
    code = (
        "import torch, bench, bench.cli, bench.run.sweep, bench.run.process, optim, models, data;"
        "from optim.registry import load_producers; load_producers();"
        "assert not torch.cuda.is_initialized(), 'CUDA initialised at import'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_optim_list_prints_steps(cli_here):
    proc = cli_here(["optim", "list"])
    assert proc.returncode == 0
    assert "fp32-cl" in proc.stdout and "default recipes on cpu" in proc.stdout
    proc = cli_here(["optim", "list", "nosuch"])
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: no recipe step matches 'nosuch'; `python -m optim list` shows them all"
    ], proc.stderr
    proc = cli_here(["optim", "list", "ptq(ort)"])  # a recipe as the default list prints it: its step, described
    assert proc.returncode == 0 and "backends (a bare ptq" in proc.stdout, proc.stderr


@pytest.fixture
def recorded_sweep(tmp_path, monkeypatch) -> dict:
    """``python -m bench`` with the sweep and the reports replaced: the run config the sweep got lands in
    ``["cfg"]``, and run_config.json is written under ``tmp_path/runs`` as in a real run."""
    import bench.run.sweep

    seen: dict = {}

    def record(cfg, run_dir, executor, **kwargs):
        seen["cfg"] = cfg
        return []

    monkeypatch.setenv("OPTBENCH_RESULTS", str(tmp_path))
    monkeypatch.setattr(bench.run.sweep, "run_sweep", record)
    monkeypatch.setattr("bench.report.write_reports", lambda *a, **k: SimpleNamespace(table="", answer="", files={}))
    return seen


@pytest.mark.parametrize(
    "extra,rounds,cpu_replicas", [([], 60, 2), (["--precise"], 120, 4), (["--precise", "--rounds", "90"], 90, 4)]
)
def test_precise_reaches_the_sweep(tiny_ckpt, tmp_path, recorded_sweep, extra, rounds, cpu_replicas):
    """--precise doubles the rounds and times four loaded processes a side; it is kept in run_config for --resume.

    The sweep itself is replaced by a recorder: what it does with a plan and a process count is tested in
    test_suite and test_replicas; here only the wiring from the command line is."""
    from bench.cli import main

    seen = recorded_sweep
    main([str(tiny_ckpt), "--recipes", "fp32,fp32-cl", "--run-id", "p", "--no-progress", *extra])
    cfg = seen["cfg"]
    assert cfg.rounds == rounds and cfg.cpu_replicas == cpu_replicas and cfg.replicas is None
    conf = json.loads((tmp_path / "runs" / "p" / "run_config.json").read_text())
    assert conf["precise"] == bool(extra) and conf["rounds"] == rounds
    seen.clear()
    main(["--resume", "p", "--no-progress"])  # no flags: the run's own settings come back
    assert seen["cfg"].rounds == rounds and seen["cfg"].cpu_replicas == cpu_replicas


@pytest.mark.parametrize(
    ("argv", "calib"),
    [
        (["--random-init", "--model", "resnet10t", "--num-classes", "10", "--img-size", "32"], 64),
        (["--random-init", "--model", "resnet10t", "--num-classes", "10", "--calib-size", "128"], 128),
        (["TINY"], 512),
    ],
)
def test_calibration_size_follows_the_weights(tiny_ckpt, tmp_path, recorded_sweep, argv, calib):
    """Random weights have no accuracy to keep: 64 calibration images unless asked; a trained checkpoint gets 512."""
    from bench.cli import main

    seen = recorded_sweep
    argv = [str(tiny_ckpt) if a == "TINY" else a for a in argv]
    main([*argv, "--recipes", "fp32,ptq(ort)", "--run-id", "c", "--no-progress"])
    assert seen["cfg"].calib_size == calib
    assert json.loads((tmp_path / "runs" / "c" / "run_config.json").read_text())["calib_size"] == calib
