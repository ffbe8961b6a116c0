"""``python -m bench.profile``: each profiler's output opens with its own tool, and the verdict tells data from compute.

The model is timm's ``test_resnet`` (untrained: profiling needs real ops, not accuracy) at 32 px, so the
whole file runs in well under a minute on two cores. No test asserts on a timing except the data-bound
case, whose dataset sleeps 50x longer than the model computes.
"""

from __future__ import annotations

import json
import math
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from bench.profile.measure import time_loop, try_fixes
from bench.profile.verdict import (
    COMPUTE,
    DATA,
    MIXED,
    LoopTiming,
    classify,
    data_verdict,
    loop_verdict,
    serial_data_fraction,
)
from bench.profile.workloads import data_workload, train_workload
from data.errors import run_cli

RUN_ID = "prof"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core box two spinning OpenMP threads made steps up to 50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def quick_ckpt(tmp_path_factory) -> Path:
    """An untrained test_resnet checkpoint for digits at 32 px: saved in a second, loads like any other."""
    from models.checkpoint import ModelInfo, create_model, resolve_data_config, save

    torch.manual_seed(0)
    model = create_model("test_resnet", 10)
    data_config = resolve_data_config(model, 32)
    data_config["crop_pct"] = 1.0
    info = ModelInfo(
        arch="test_resnet",
        num_classes=10,
        data_config=data_config,
        class_names=tuple(str(i) for i in range(10)),
        data_spec="digits",
    )
    path = tmp_path_factory.mktemp("profile-ckpt") / "test_resnet.pt"
    return save(path, model, info)


@pytest.fixture(scope="module")
def profiled(quick_ckpt, tmp_path_factory) -> Path:
    """One real CLI run over every target and profiler; the tests below read its outputs."""
    results = tmp_path_factory.mktemp("profile-results")
    args = [
        "bench.profile", str(quick_ckpt), "--steps", "2", "--batch-size", "8", "--torch-schedule", "1,1,2,1",
        "--threads", "1", "--no-fixes", "--run-id", RUN_ID,
    ]  # fmt: skip
    env = {**os.environ, "OPTBENCH_RESULTS": str(results)}
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if not torch.cuda.is_available():  # Kineto's GPU probe is not an error on a CPU-only machine
        assert "gpuGetDeviceCount" not in proc.stderr, proc.stderr[-3000:]
    out_dir = results / "runs" / RUN_ID / "profile"
    (out_dir / "stdout.txt").write_text(proc.stdout)
    return out_dir


# ---------- cProfile ----------


def test_cprofile_prof_loads_with_pstats_and_names_train_step(profiled):
    stats = pstats.Stats(str(profiled / "train.prof"))
    functions = {(Path(file).name, name) for file, _line, name in stats.stats}  # type: ignore[attr-defined]
    assert ("train.py", "train_step") in functions
    data_functions = {name for _file, _line, name in pstats.Stats(str(profiled / "data.prof")).stats}  # type: ignore[attr-defined]
    assert "__getitem__" in data_functions  # num_workers=0: the dataset runs in this process
    text = (profiled / "train.cprofile.txt").read_text()
    assert "top 15 by cumulative" in text and "top 15 by tottime" in text and "train_step" in text
    stdout = (profiled / "stdout.txt").read_text()
    assert f"snakeviz {profiled / 'train.prof'}" in stdout


# ---------- torch.profiler ----------


@pytest.mark.parametrize("target", ["data", "train", "infer"])
def test_torch_trace_is_chrome_json_with_operator_events(profiled, target):
    traces = sorted((profiled / "torch" / target).glob("*.pt.trace.json"))
    assert len(traces) == 1  # repeat=1: one active cycle, one trace
    trace = json.loads(traces[0].read_text())
    events = trace["traceEvents"]
    ops = [e for e in events if e.get("cat") == "cpu_op"]
    assert ops, "no operator events in the trace"
    assert all("ts" in e and "dur" in e and e.get("ph") == "X" for e in ops)
    names = {e["name"] for e in events}
    assert f"enumerate(DataLoader)#optbench/{target}.__next__" in {e["name"] for e in ops}  # the plugin's DataLoader
    if target != "data":
        assert "aten::convolution" in names or any(n.startswith("aten::mkldnn_conv") for n in names)
    table = (profiled / f"{target}.torch.txt").read_text()
    assert "self CPU time" in table and "aten::" in table


# ---------- line_profiler ----------


def test_line_profiler_report_names_the_profiled_lines(profiled):
    from line_profiler import load_stats

    stats = load_stats(str(profiled / "train.lprof"))
    profiled_names = {name for _file, _line, name in stats.timings}
    assert "train_step" in profiled_names and "DigitsDataset.__getitem__" in profiled_names
    report = (profiled / "train.lprof.txt").read_text()
    assert "Function: train_step" in report
    assert "loss.backward()" in report and "optimizer.step()" in report  # the lines themselves, with hits
    data_report = (profiled / "data.lprof.txt").read_text()
    assert "Function: DigitsDataset.__getitem__" in data_report
    assert "image = self.transform(image)" in data_report
    assert "Normalize.forward" in data_report  # each transform of the Compose gets its own block


# ---------- verdict from the CLI ----------


def test_cli_verdicts_have_fractions_that_sum_to_one(profiled):
    summary = json.loads((profiled / "verdict.json").read_text())
    verdicts = {v["target"]: v for v in summary["verdicts"]}
    assert set(verdicts) == {"data", "train", "infer"}
    for verdict in verdicts.values():
        assert 0.0 <= verdict["data_fraction"] <= 1.0
        assert math.isclose(verdict["data_fraction"] + verdict["compute_fraction"], 1.0, abs_tol=1e-9)
        assert verdict["bound"] in (DATA, COMPUTE, MIXED)
    train = verdicts["train"]["measurements"]["base"]
    assert train["steps"] == 2 and train["wait_ms_mean"] >= 0 and train["compute_ms_mean"] > 0
    data = verdicts["data"]["measurements"]
    assert data["loader_images_per_s"] > 0 and data["train_step_images_per_s"] > 0
    assert summary["config"]["recipe"] == "fp32"
    text = (profiled / "verdict.txt").read_text()
    assert text.count("\n") == 4 and text.splitlines()[-1].startswith("Measured on ")  # names the machine
    assert "data loading is" in (profiled / "stdout.txt").read_text()


# ---------- verdict logic on synthetic timings ----------


def test_classify_thresholds():
    assert classify(0.63) == DATA and classify(0.5) == DATA
    assert classify(0.08) == COMPUTE and classify(0.2) == COMPUTE
    assert classify(0.35) == MIXED
    with pytest.raises(ValueError):
        classify(1.5)


def test_loop_verdict_names_the_best_measured_fix():
    base = LoopTiming("as configured", (0.063,) * 5, (0.037,) * 5, batch_size=32)
    workers = LoopTiming("num_workers=2", (0.0035,) * 5, (0.040,) * 5, batch_size=32)
    worse = LoopTiming("num_workers=4", (0.02,) * 5, (0.045,) * 5, batch_size=32)
    verdict = loop_verdict("train", base, [worse, workers], what="train step")
    assert verdict.bound == DATA
    assert math.isclose(verdict.data_fraction, 0.63)
    assert math.isclose(verdict.data_fraction + verdict.compute_fraction, 1.0)
    assert "data loading is 63% of the train step" in verdict.summary
    assert "num_workers=2 brings it to 8% (measured: 736 img/s, 2.30x)" in verdict.summary
    assert [f["label"] for f in verdict.fixes] == ["num_workers=4", "num_workers=2"]
    useless = loop_verdict("train", base, [LoopTiming("num_workers=2", (0.062,) * 5, (0.037,) * 5, batch_size=32)])
    assert "none of the fixes tried helped (best: num_workers=2, 1.01x, measured)" in useless.summary
    faster_but_waiting = LoopTiming("num_workers=2", (0.050,) * 5, (0.010,) * 5, batch_size=32)
    text = loop_verdict("infer", base, [faster_but_waiting]).summary
    assert "num_workers=2 is fastest (measured: 533 img/s, 1.67x), data still 83% of the step" in text


def test_loop_verdict_compute_bound_and_invalid_timings():
    verdict = loop_verdict("infer", LoopTiming("base", (0.001, 0.002), (0.05, 0.06), batch_size=8))
    assert verdict.bound == COMPUTE and verdict.data_fraction < 0.1 and not verdict.fixes
    assert "speed up the model" in verdict.summary
    with pytest.raises(ValueError):
        LoopTiming("x", (0.1,), (0.1, 0.2), batch_size=1)
    with pytest.raises(ValueError):
        LoopTiming("x", (), (), batch_size=1)


def test_data_verdict_compares_loader_and_model_rates():
    assert math.isclose(serial_data_fraction(100.0, 300.0), 0.75)
    slow = data_verdict(100.0, 300.0, fixes=[("num_workers=2", 190.0), ("num_workers=4", 250.0)])
    assert slow.bound == DATA and math.isclose(slow.data_fraction, 0.75)
    assert "num_workers=4 brings the loader to 250 img/s (measured: 2.50x) and loading to 55%" in slow.summary
    fast = data_verdict(5000.0, 200.0)
    assert fast.bound == COMPUTE and fast.data_fraction < 0.05 and "25.00x headroom" in fast.summary


# ---------- real loops: a slow dataset is data-bound, a fast one compute-bound ----------


class SlowDigits(Dataset):
    """A dataset that sleeps in ``__getitem__``, like a slow disk or a heavy decode."""

    def __init__(self, n: int = 64, delay_s: float = 0.01) -> None:
        self.images = torch.randn(n, 3, 16, 16)
        self.delay_s = delay_s

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        time.sleep(self.delay_s)
        return self.images[index], index % 10


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 10),
    )  # fmt: skip


def test_slow_dataset_is_data_bound_and_fixes_are_measured():
    loader = DataLoader(SlowDigits(delay_s=0.02), batch_size=8, shuffle=True)  # >= 160 ms of sleep per batch
    model = tiny_net()
    workload = train_workload(model, loader)
    base = time_loop(workload, steps=2)
    verdict = loop_verdict("train", base)
    assert verdict.bound == DATA, verdict.summary
    assert base.data_fraction > 0.5
    trials = try_fixes(workload, 2, base, model=model)
    labels = [t.label for t in trials]
    assert labels[0] == "num_workers=2"
    assert any("persistent_workers" in label for label in labels) and any("channels_last" in label for label in labels)
    assert all(0.0 <= t.data_fraction <= 1.0 and t.startup_s is not None for t in trials)
    fixed = loop_verdict("train", base, trials)
    # With a sleeping dataset the best fix may cut the time yet leave the loop data-bound: both wordings are honest.
    assert ("brings it to" in fixed.summary or "is fastest" in fixed.summary) and len(fixed.fixes) == len(trials)
    assert next(model.parameters()).is_contiguous()  # channels_last was undone after its trial


def test_fast_dataset_is_compute_bound():
    images, labels = torch.randn(64, 3, 64, 64), torch.randint(0, 10, (64,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip
    base = time_loop(train_workload(model, loader), steps=3)
    verdict = loop_verdict("train", base)
    assert verdict.bound == COMPUTE, verdict.summary
    loader_only = time_loop(data_workload(loader), steps=3)
    assert loader_only.compute_total == 0 and loader_only.data_fraction == 1.0 and loader_only.images_per_s > 0


# ---------- bad input: one line, exit 2 ----------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "train,bogus"], "unknown target 'bogus'; choose from: data, train, infer"),
        (["--target", ""], "--target is empty"),
        (["--profiler", " , "], "--profiler is empty"),
        (["--profiler", "vtune"], "unknown profiler 'vtune'; choose from: cprofile, torch, line"),
        (["--steps", "0"], "--steps must be positive, got 0"),
        (["--steps", "-3"], "--steps must be positive, got -3"),
        (["--torch-schedule", "1,1,0,1"], "ACTIVE and REPEAT > 0"),
        (["--recipe", "nosuchstep"], "nosuchstep"),
        (["--data", "/nonexistent/images"], "data folder not found: /nonexistent/images"),
        (["--data", "no-such-dataset"], "unknown data spec 'no-such-dataset'"),
        (["--batch-size", "0"], "--batch-size must be positive, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(quick_ckpt, capsys, argv, message):
    from bench.profile.cli import main

    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(quick_ckpt), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and message in err


def test_missing_line_profiler_names_the_extra(quick_ckpt, capsys, monkeypatch):
    from bench.profile.cli import main

    monkeypatch.setitem(sys.modules, "line_profiler", None)  # import line_profiler now raises ImportError
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(quick_ckpt), "--profiler", "cprofile,line"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "line_profiler is not installed" in err and "pip install '.[profile]'" in err


@pytest.mark.gpu
def test_cuda_train_trace_has_kernels_and_tries_pin_memory(quick_ckpt, tmp_path):
    env = {**os.environ, "OPTBENCH_RESULTS": str(tmp_path / "gpu")}
    args = [
        "bench.profile", str(quick_ckpt), "--device", "cuda", "--target", "train", "--profiler", "torch",
        "--steps", "3", "--batch-size", "32", "--run-id", "gpu",
    ]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out_dir = tmp_path / "gpu" / "runs" / "gpu" / "profile"
    trace = json.loads(next((out_dir / "torch" / "train").glob("*.pt.trace.json")).read_text())
    assert any(e.get("cat") == "kernel" for e in trace["traceEvents"])
    assert "self CUDA time" in (out_dir / "train.torch.txt").read_text()
    verdict = json.loads((out_dir / "verdict.json").read_text())["verdicts"][0]
    if verdict["fixes"]:
        assert any("pin_memory" in f["label"] for f in verdict["fixes"])


# ---------- TensorBoard: the profiler and HParams plugins, read through their HTTP endpoints ----------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def tensorboard(profiled):
    """``tensorboard --logdir results/runs`` on 127.0.0.1 over the profile run and a sweep's reports beside it."""
    from optbench_testing import report_rows, tiny_config

    from bench.report import write_reports

    runs = profiled.parent.parent
    sweep = runs / "sweep"
    sweep.mkdir()
    rows = report_rows("fp32", 10.0, 95.0, 200.0) + report_rows("fp32-cl", 6.0, 95.0, 300.0)
    write_reports(sweep, rows, tiny_config(sweep / "ckpt.pt", ["fp32", "fp32-cl"], run_id="sweep"))
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(runs), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/data/plugin"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                listing = _get(f"{base}/pytorch_profiler/runs")
                if not listing["loading"] and listing["runs"]:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tensorboard did not serve the profiler runs: {server.stderr.read()[-2000:]}")
            time.sleep(1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tensorboard_profiler_overview_counts_the_data_wait_the_verdict_measured(tensorboard, profiled):
    run = f"{RUN_ID}/profile/torch/train"
    assert run in _get(f"{tensorboard}/pytorch_profiler/runs")["runs"]
    assert _get(f"{tensorboard}/pytorch_profiler/workers?run={run}&view=Overview") == ["train"]
    overview = _get(f"{tensorboard}/pytorch_profiler/overview?run={run}&worker=train&span=1")
    parts = {p["name"]: p["value"] for p in overview["performance"][0]["children"]}  # microseconds per step
    verdict = {v["target"]: v for v in json.loads((profiled / "verdict.json").read_text())["verdicts"]}
    waited_us = 1e3 * verdict["train"]["measurements"]["base"]["wait_ms_mean"]
    # The same fetch, profiled and not: within a factor of five (profiler overhead, two steps each).
    assert parts["DataLoader"] > 0 and waited_us / 5 < parts["DataLoader"] < waited_us * 5, (parts, waited_us)


def test_tensorboard_hparams_lists_one_sortable_row_per_variant(tensorboard):
    experiment = _get(f"{tensorboard}/hparams/experiment", {"experimentName": ""})
    assert {"variant", "device"} <= {h["name"] for h in experiment["hparamInfos"]}
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"hparam/p50_ms", "hparam/speedup_vs_fp32", "hparam/top1"} <= metrics
    groups = _get(
        f"{tensorboard}/hparams/session_groups",
        {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"], "startIndex": 0,
         "sliceSize": 100, "colParams": [{"metric": {"tag": "hparam/p50_ms"}, "order": "ORDER_ASC"}]},
    )["sessionGroups"]  # fmt: skip
    assert [g["hparams"]["variant"] for g in groups] == ["fp32-cl", "fp32"]  # sorted by p50 by the plugin
    p50 = {m["name"]["tag"]: m["value"] for m in groups[0]["metricValues"]}["hparam/p50_ms"]
    assert p50 == 6.0
