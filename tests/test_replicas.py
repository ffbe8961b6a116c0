"""Several measurement processes per side: how rounds are spread over them and how their rows are pooled."""

from __future__ import annotations

import itertools
import textwrap
import time

import pytest
from optbench_testing import tiny_config

from bench.run.client import ServerError
from bench.run.local import LocalExecutor
from bench.run.schedule import PairingPlan, Side, first_side, interleave
from bench.run.sides import merge_replica_rows, replica_count, with_builder_fields
from bench.run.sweep import run_sweep
from bench.scenarios import ScenarioConfig


class _Proc:
    def poll(self):
        return None


class FakeServer:
    """Answers slices with its name's constant, and remembers the order it was asked in."""

    def __init__(self, name: str, value: float, log: list[str]) -> None:
        self.name, self.value, self.log, self.proc = name, value, log, _Proc()

    def slice(self, scenario, seconds, calls):
        self.log.append(self.name)
        return [self.value] * calls

    def close(self) -> None:
        pass


def _side(name: str, count: int, log: list[str], value: float = 1.0) -> Side:
    return Side(name, [FakeServer(f"{name}{k}", value, log) for k in range(count)])


def _rounds(sides, rounds: int):
    log: list[str] = []
    for side in sides:
        for server in side.servers:
            server.log = log
    scenario = ScenarioConfig("latency", 1, min_iters=rounds, min_seconds=0.0, max_seconds=60.0)
    out = interleave(sides, [scenario], PairingPlan(rounds=rounds, gap_s=0.0))
    return out, [log[len(sides) * r] for r in range(rounds)]  # who went first in each round


def test_rounds_meet_every_combination_of_processes_in_both_orders():
    ref, var = _side("ref", 2, []), _side("var", 2, [])
    out, firsts = _rounds([ref, var], 16)
    assert len(out["ref"]["latency"]) == len(out["var"]["latency"]) == 16  # one slice per side and round
    combos = list(zip(ref.picked["latency"], var.picked["latency"], strict=True))
    for combo in itertools.product((0, 1), (0, 1)):
        rounds = [r for r, c in enumerate(combos) if c == combo]
        assert len(rounds) == 4, combo
        # Within a combination, each side goes first (right after the pause) as often as second.
        assert sorted(firsts[r][:3] for r in rounds) == ["ref", "ref", "var", "var"], combo
    # first_side is the rotation two sides alternate in.
    assert all((first_side(r, 2) == 1) == firsts[r].startswith("var") for r in range(16))


def test_one_reference_two_variant_processes_keeps_order_and_process_apart():
    ref, var = _side("ref", 1, []), _side("var", 2, [])
    _, firsts = _rounds([ref, var], 8)
    for k in (0, 1):
        rounds = [r for r, p in enumerate(var.picked["latency"]) if p == k]
        assert len(rounds) == 4 and sum(firsts[r] == f"var{k}" for r in rounds) == 2  # first in half its rounds


class DyingServer(FakeServer):
    """Answers ``lives`` slices, then fails as a dead measurement process does."""

    def __init__(self, name: str, value: float, log: list[str], lives: int) -> None:
        super().__init__(name, value, log)
        self.lives = lives

    def slice(self, scenario, seconds, calls):
        if self.lives <= 0:
            raise ServerError(f"{self.name} measurement process exited with code 1")
        self.lives -= 1
        return super().slice(scenario, seconds, calls)


def test_a_second_process_that_dies_is_dropped_and_its_rounds_go_to_the_first():
    log: list[str] = []
    ref = Side("ref", [FakeServer("r", 1.0, log)])
    var = Side("var", [FakeServer("v0", 2.0, log), DyingServer("v1", 2.0, log, lives=1)])
    out = interleave([ref, var], [ScenarioConfig("latency", 1, min_iters=6, min_seconds=0.0)], PairingPlan(6, 0.0))
    assert len(out["var"]["latency"]) == 6  # no round lost
    assert var.picked["latency"] == [0, 0, 1, 0, 0, 0] and list(var.dropped) == [1]
    assert [p for p, _ in var.history["latency"]] == var.picked["latency"]
    assert "v1 dropped (v1 measurement process exited with code 1)" in var.notes()[0]
    with pytest.raises(ServerError):  # the first process is the side: its death is the side's
        interleave([Side("x", [DyingServer("x0", 1.0, log, lives=0)])], [ScenarioConfig("latency", 1)], PairingPlan(5))


def test_a_single_server_is_a_side_of_one():
    log: list[str] = []
    out = interleave(
        [FakeServer("a", 1.0, log), FakeServer("b", 1.0, log)],
        [ScenarioConfig("latency", 1, min_iters=5, min_seconds=0.0)],
        PairingPlan(rounds=5, gap_s=0.0),
    )
    assert log == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]
    assert [len(out[n]["latency"]) for n in ("a", "b")] == [5, 5]


def _row(samples_ms: list[float], **extra) -> dict:
    return {"scenario": "latency", "batch_size": 1, "samples_ms": samples_ms, **extra}


def test_merged_rows_pool_every_process_slices_in_the_order_they_were_taken():
    first = [_row([1.0] * 4, build_s=7.0, top1=99.0, peak_rss_mb=300.0, p50_ms=1.0)]
    second = [_row([3.0] * 4, build_s=None, peak_rss_mb=350.0, p50_ms=3.0)]
    history = {"latency": [(0, [1e-3, 1e-3]), (1, [3e-3] * 3), (0, [1e-3, 1e-3]), (1, [3e-3])]}
    (row,) = merge_replica_rows([first, second], history)
    assert row["n"] == 8 and row["samples_ms"] == [1.0, 1.0, 3.0, 3.0, 3.0, 1.0, 1.0, 3.0]
    assert row["p50_ms"] == pytest.approx(2.0) and row["mean_ms"] == pytest.approx(2.0)
    assert row["slice_lengths"] == [2, 3, 2, 1] and row["slice_process"] == [0, 1, 0, 1]
    assert row["process_samples"] == [4, 4]
    assert row["build_s"] == 7.0 and row["top1"] == 99.0 and row["peak_rss_mb"] == 350.0
    one = {"latency": [(0, [1e-3] * 2), (0, [1e-3] * 2)]}
    assert merge_replica_rows([first], one) == first  # one process took every slice: its row as it is


def test_loaded_rows_take_the_builders_fields_and_keep_their_own_timing():
    pinned = "calling thread on CPU 0, 3 other threads on CPU 1"
    row = _row([1.0] * 3, p50_ms=1.0, first_call_ms=2.0, peak_rss_mb=800.0, thread_pinning=pinned)
    report = {"build_s": 9.0, "first_call_ms": 5.0, "top1": 99.0, "peak_rss_mb": 990.0, "thread_pinning": "other"}
    out = with_builder_fields(row, report)
    assert out["build_s"] == 9.0 and out["first_call_ms"] == 5.0 and out["top1"] == 99.0  # the builder's
    assert out["p50_ms"] == 1.0 and out["samples_ms"] == [1.0] * 3 and out["thread_pinning"] == pinned  # the row's
    assert out["peak_rss_mb"] == 990.0  # the larger of the two


def test_replica_count_defaults():
    assert replica_count("cpu", load_compiles=False, requested=None) == 2
    assert replica_count("cpu", load_compiles=True, requested=None) == 1  # a second compile costs the build again
    assert replica_count("cuda", load_compiles=False, requested=None) == 1
    assert replica_count("cpu", load_compiles=True, requested=3) == 3
    assert replica_count("cpu", load_compiles=False, requested=None, quick=True) == 1  # a smoke run
    # --precise raises the CPU default only: compiling loaders and CUDA keep one process, an explicit count wins
    assert replica_count("cpu", load_compiles=False, requested=None, cpu_default=4) == 4
    assert replica_count("cpu", load_compiles=True, requested=None, cpu_default=4) == 1
    assert replica_count("cuda", load_compiles=False, requested=None, cpu_default=4) == 1
    assert replica_count("cpu", load_compiles=False, requested=3, cpu_default=4) == 3


UNLOADABLE = textwrap.dedent(
    """
    from optim.registry import MODULE, register_step

    @register_step("unloadable-step", accepts=[MODULE], produces=MODULE)
    def unloadable(artifact, ctx):
        artifact.save_hook = lambda directory: {"kind": "no-such-loader"}
        return artifact
    """
)


def test_a_second_process_that_cannot_load_leaves_one_process_and_a_note(tmp_path, tiny_ckpt, install_plugin):
    install_plugin("unloadable_steps", UNLOADABLE, ["unloadable-step"])
    scenarios = (ScenarioConfig("latency", 1, warmup_iters=1, warmup_seconds=0.0, min_iters=5, min_seconds=0.1),)
    cfg = tiny_config(tiny_ckpt, ["fp32", "unloadable-step"], run_id="u", scenarios=scenarios, rounds=5, replicas=2)
    rows = run_sweep(cfg, tmp_path / "run", LocalExecutor(), progress=False)
    (row,) = [r for r in rows if r["recipe"] == "unloadable-step"]
    # Measured anyway, in the process that built it, and the row says why.
    assert row["status"] == "ok" and row["pairing"]["processes"] == 1 and row["pairing"]["builder_timed"] is True
    assert "could not load the saved variant" in row["note"] and "no-such-loader" in row["note"]
    assert "measured in the process that built it" in row["note"] and row["top1"] > 80
    (ref,) = [r for r in rows if r["recipe"] == "fp32"]
    assert len(ref["process_samples"]) == 2  # the reference's own copies loaded fine
    assert row["pairing"]["reference_builder_timed"] is False


class SlowServer(FakeServer):
    """A slice that takes real time, as a large model's would."""

    def slice(self, scenario, seconds, calls):
        time.sleep(0.02 * calls)
        return super().slice(scenario, seconds, calls)


def test_sweep_plan_gives_slow_models_one_call_a_slice_and_caps_each_side():
    """A call longer than the slice's time share is a slice of one call, and the rounds stop at the side cap but
    never before min_rounds: how resnet50 at 224 fits a sweep (the gate's plan keeps its call shares)."""
    from bench.run.pairing import SWEEP_PLAN

    scenario = ScenarioConfig("throughput", 16, min_iters=300, min_seconds=3.0, max_seconds=60.0)
    assert SWEEP_PLAN.slice_budget(scenario) == (0.05, 1)
    assert PairingPlan(rounds=60).slice_budget(scenario)[1] == 5
    log: list[str] = []
    sides = [Side(n, [SlowServer(n, 1.0, log)]) for n in ("ref", "var")]
    plan = PairingPlan(rounds=60, gap_s=0.0, min_rounds=4, calls_per_slice=1, side_seconds=0.05)
    out = interleave(sides, [scenario], plan)
    taken = len(out["ref"]["throughput"])
    assert taken == len(out["var"]["throughput"])
    assert 4 <= taken < 10  # 0.05 s a side at 0.02 s a slice: the cap, not the 60 rounds, ended it
    plan = PairingPlan(rounds=60, gap_s=0.0, min_rounds=8, calls_per_slice=1, side_seconds=0.001)
    assert len(interleave(sides, [scenario], plan)["ref"]["throughput"]) == 8  # min_rounds holds against the cap


@pytest.mark.parametrize(("call_s", "untimed"), [(0.0, 3), (0.03, 1)])
def test_a_slice_warms_up_only_while_calls_are_shorter_than_the_slice(monkeypatch, call_s, untimed):
    """Three slices of 20 ms: a fast call gets its untimed warm call every slice; a 30 ms call only before its
    first timed slice (after that the warm call would double every slice of a large model)."""
    import io
    from types import SimpleNamespace

    from bench.measure import quiesce
    from bench.run.server import _Server
    from bench.scenarios.batch import TimedCall
    from models.timers import WallTimer

    calls = []

    def call():
        calls.append(time.perf_counter())
        time.sleep(call_s)

    server = _Server(io.StringIO())
    scenario = ScenarioConfig("latency", 1)
    server.prep = SimpleNamespace(job=SimpleNamespace(scenarios=[scenario]))
    server.calls["latency"] = TimedCall(call, WallTimer(), 1)
    server.samples["latency"] = []
    monkeypatch.setattr(quiesce, "wait_until_idle", lambda: 0.0)
    timed = sum(len(server.slice("latency", 0.02, 1)["samples"]) for _ in range(3))
    assert len(calls) - timed == untimed


_LOADER = """
import json, sys
from bench.config import Job
from bench.run.process import prepare
import bench.run.server  # everything a loaded measurement process imports

prep = prepare(Job.from_dict(json.loads(sys.argv[1])), load_dir=sys.argv[2])
print(json.dumps({"timm": "timm" in sys.modules, "model": prep.ctx.loaded.model is None, "size": prep.info.input_size,
                  "ms": prep.first_ms}))
"""


@pytest.mark.parametrize(("recipe", "standalone"), [("ort", True), ("fp32", False)])
def test_a_process_that_loads_a_saved_file_never_imports_timm(tmp_path, tiny_ckpt, recipe, standalone):
    """Loaded copies of an ONNX variant read its manifest for the input size and never build the source model;
    an eager variant still needs the architecture (timm) to rebuild its module."""
    import json
    import subprocess
    import sys

    import models
    from bench.config import Job
    from optim import build
    from optim.context import build_context

    cfg = tiny_config(tiny_ckpt, [recipe])
    loaded = models.load(cfg.load)
    variant = build(recipe, loaded, build_context(cfg.build_settings(), loaded, tmp_path / "v"))
    variant.save(tmp_path / "v")
    job = Job(cfg, recipe, str(tmp_path / "run"), accuracy=False)
    env = {"OPTBENCH_RESULTS": str(tmp_path / "results"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", _LOADER, json.dumps(job.to_dict()), str(tmp_path / "v")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["size"] == [3, 32, 32] and seen["ms"] > 0
    assert seen["timm"] is (not standalone) and seen["model"] is standalone
