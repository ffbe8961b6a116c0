"""``python -m bench.profile --step my_pkg.mod:make_step``: the user's own loop, on a tiny model that is not timm's."""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import sys
from pathlib import Path

import pytest

# A user's module: a two-layer graph network on small random graphs (the shape of a PyG model on Cora).
USER_STEP_SOURCE = """
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class TinyGCN(nn.Module):
    def __init__(self, features=16, hidden=32, classes=4):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(features, hidden), nn.Linear(hidden, classes)

    def forward(self, x, adj):
        return self.lin2(adj @ torch.relu(self.lin1(adj @ x)))


class Graphs(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(40, 16, generator=g)
        adj = (torch.rand(40, 40, generator=g) < 0.1).float() + torch.eye(40)
        return x, adj / adj.sum(1, keepdim=True), torch.randint(0, 4, (40,), generator=g)


def make_step():
    model = TinyGCN()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def step(batch):
        x, adj, y = batch
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[0], adj[0]), y[0]).backward()
        optimizer.step()

    return step, DataLoader(Graphs(), batch_size=1, shuffle=True)


def make_whole_step():
    step, loader = make_step()
    batch = next(iter(loader))
    return lambda: step(batch)


def make_generator_step():
    step, loader = make_step()
    return step, (b for b in loader)


def make_empty_step():
    step, loader = make_step()
    return step, torch.utils.data.DataLoader(list(range(0)), batch_size=4)


def make_model():
    return TinyGCN()


def make_exploding_step():
    def step():
        raise ValueError("step exploded")

    return step
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> Path:
    (tmp_path / "my_gnn.py").write_text(USER_STEP_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_gnn", raising=False)
    return tmp_path


def test_a_users_step_with_its_dataloader_gets_all_three_profilers_and_a_split_verdict(user_module, tmp_path):
    results = tmp_path / "results"
    args = ["--step", "my_gnn:make_step", "--steps", "3", "--torch-schedule", "1,1,2,1", "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.profile", *args, "--no-fixes", "--run-id", "gnn"],
        cwd=user_module,  # as a user runs it: from the folder that holds their module
        env={**os.environ, "OPTBENCH_RESULTS": str(results)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = results / "runs" / "gnn" / "profile"
    verdict = json.loads((out / "verdict.json").read_text())["verdicts"]
    assert [v["target"] for v in verdict] == ["step"]
    base = verdict[0]["measurements"]["base"]
    assert verdict[0]["bound"] in ("data-bound", "compute-bound", "mixed")
    assert base["wait_ms_mean"] > 0 and base["compute_ms_mean"] > 0 and base["unit"] == "samples"
    functions = {name for _file, _line, name in pstats.Stats(str(out / "step.prof")).stats}  # type: ignore[attr-defined]
    assert "step" in functions and "__getitem__" in functions
    trace = json.loads(next((out / "torch" / "step").glob("*.pt.trace.json")).read_text())
    names = {e["name"] for e in trace["traceEvents"] if e.get("cat") == "cpu_op"}
    assert "enumerate(DataLoader)#optbench/step.__next__" in names and "aten::addmm" in names
    if (out / "step.lprof.txt").exists():  # line_profiler is in the profile extra
        assert "my_gnn.make_step.<locals>.step" in (out / "step.lprof.txt").read_text()
    assert "data loading is" in proc.stdout and "samples/s" in proc.stdout


def test_a_step_that_loads_its_own_data_is_timed_but_not_split(user_module, run_in_process):
    from bench.profile.cli import main

    code, out, err = run_in_process(
        main, ["--step", "my_gnn:make_whole_step", "--steps", "2", "--profiler", "cprofile", "--run-id", "own"]
    )
    assert code == 0, err
    assert "steps/s; the step fetches its own data, so its data share is not measured" in out
    verdict = json.loads(
        (Path(os.environ["OPTBENCH_RESULTS"]) / "runs" / "own" / "profile" / "verdict.json").read_text()
    )["verdicts"][0]
    assert verdict["bound"] == "not split" and verdict["data_fraction"] is None
    # The same --run-id again would mix two loops' traces in one TensorBoard run: refused, the first kept.
    code, _out, err = run_in_process(main, ["--step", "my_gnn:make_whole_step", "--steps", "2", "--run-id", "own"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "already holds a profile" in err, err
    assert (Path(os.environ["OPTBENCH_RESULTS"]) / "runs" / "own" / "profile" / "verdict.json").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--step", "my_gnn:nope"], "--step my_gnn:nope: my_gnn has no attribute 'nope'"),
        (["--step", "my_gnn"], "write it as package.module:callable"),
        (["--step", "not_installed_mod:make"], "cannot import 'not_installed_mod'"),
        (["--step", "my_gnn:make_model"], "returned a model; return a step function"),
        (["--step", "my_gnn:make_generator_step"], "one-shot iterator"),
        (["--step", "my_gnn:make_empty_step"], "holds no batches"),
        (["--step", "my_gnn:make_step", "--target", "train"], "--target data/train/infer need a checkpoint"),
        (["some.pt", "--step", "my_gnn:make_step"], "drop a checkpoint"),
    ],
)
def test_bad_step_input_is_one_line_and_exit_2(user_module, run_in_process, argv, message):
    from bench.profile.cli import main

    code, _out, err = run_in_process(main, argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_a_step_that_raises_is_one_error_line_not_a_traceback(user_module, run_in_process):
    """The user's step failing while profiled is bad input, named in one line after the progress it printed."""
    from bench.profile.cli import main

    code, _out, err = run_in_process(main, ["--step", "my_gnn:make_exploding_step", "--steps", "2"])
    assert code == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last == "error: --step my_gnn:make_exploding_step: the step raised ValueError: step exploded", err
