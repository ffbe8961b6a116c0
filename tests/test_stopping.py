"""Sequential stopping: a variant's paired rounds end once its interval is tight or it is settled against an earlier
variant, and the interval it reports still covers (bench.measure.sequential, bench.run.stopping)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.measure.sequential import Looks, Rival, settled_by, stop_reason
from bench.measure.stopping_sim import heavy_tailed, lognormal, resampled, simulate
from bench.run.client import ServerError
from bench.run.schedule import PairingPlan, Side, interleave, round_order
from bench.run.stopping import RoundStopper, rivals_from_rows, with_reference
from bench.scenarios import ScenarioConfig

RECORDED = (
    Path(__file__).parents[1] / "results" / "baselines" / "round-ratios-resnet50-224-random-init-amd-epyc-zen4-2t.json"
)


def test_looks_are_quarters_of_the_maximum_never_before_the_minimum():
    assert Looks.planned(60, 10).rounds == (15, 30, 45, 60) and Looks.planned(60, 10).alpha == 0.0182
    assert Looks.planned(20, 10).rounds == (10, 15, 20) and Looks.planned(20, 10).alpha == 0.0221
    assert Looks.planned(120, 10, sequential=False).rounds == (120,) and Looks.planned(120, 10, False).alpha == 0.05


def test_the_rule_stops_tight_intervals_and_settled_losers_only():
    assert stop_reason(2.0, 1.95, 2.05, 0.03) == "tight"
    assert stop_reason(2.0, 1.8, 2.2, 0.03) is None
    faster = [Rival("ptq(ov)", 3.0, 80.0)]
    assert stop_reason(2.0, 1.8, 2.2, 0.03, faster, top1=79.0) == "settled (below ptq(ov))"
    # More accurate than the faster one: on the speed/top-1 front, so it keeps its rounds.
    assert stop_reason(2.0, 1.8, 2.2, 0.03, faster, top1=81.0) is None
    assert settled_by(2.2, None, faster, compare_top1=True) is None  # its own top-1 not known yet
    assert settled_by(2.2, None, [Rival("x", 3.0, None)], compare_top1=False) == "x"  # random init: speed only
    assert settled_by(3.1, 70.0, faster, compare_top1=True) is None  # the intervals overlap


@pytest.mark.parametrize(
    "draw",
    [lognormal(math.log(0.3), 0.05), lognormal(math.log(0.3), 0.12), heavy_tailed(math.log(0.3), 0.06)],
    ids=["lognormal-quiet", "lognormal-noisy", "student-t3"],
)
def test_the_stopped_interval_keeps_its_95_percent(draw):
    out = simulate(draw, math.log(0.3), Looks.planned(60, 10), trials=600, seed=1)
    assert 0.94 <= out.coverage <= 0.995, out


def test_recorded_round_ratios_keep_their_coverage_and_stop_early():
    recorded = json.loads(RECORDED.read_text())
    assert len(recorded) >= 10
    coverage, rounds = [], []
    for ratios in recorded.values():
        draw, centre = resampled(ratios)
        out = simulate(draw, centre, Looks.planned(60, 10), trials=150, seed=2)
        coverage.append(out.coverage)
        rounds.append(out.mean_rounds)
    assert np.mean(coverage) >= 0.94, coverage
    assert np.mean(rounds) < 45, rounds  # the rule saves rounds on what a real sweep measures


def test_a_clear_loser_stops_at_the_minimum_and_close_leaders_run_to_the_maximum():
    looks = Looks.planned(60, 10)
    leader = [Rival("leader", 3.0, None)]
    loser = simulate(lognormal(math.log(1 / 1.5), 0.2), math.log(1 / 1.5), looks, 300, leader)
    assert loser.mean_rounds == 15 and set(loser.reasons) == {"settled"}
    close = simulate(lognormal(math.log(1 / 2.95), 0.25), math.log(1 / 2.95), looks, 300, leader)
    assert close.mean_rounds > 55 and close.reasons.get("maximum", 0) > 270


class FakeServer:
    """A process that answers slices with per-call times around ``ms``, with a round-to-round wobble."""

    def __init__(self, name: str, ms: float, sd: float, seed: int) -> None:
        self.name, self.ms, self.sd, self.rng = name, ms, sd, np.random.default_rng(seed)

    def slice(self, scenario, seconds, calls):
        return list(self.ms / 1e3 * np.exp(self.rng.normal(0, self.sd, 3)))

    def close(self) -> None:
        pass


def _interleave(variant_ms: float, sd: float, rivals=None, precise: bool = False):
    scenario = ScenarioConfig("latency", 1, min_seconds=0.0, max_seconds=600)
    plan = PairingPlan(rounds=60, gap_s=0.0, min_rounds=10, calls_per_slice=1)
    ref, var = Side("fp32", [FakeServer("fp32", 10.0, sd, 1)]), Side("v", [FakeServer("v", variant_ms, sd, 2)])
    stopper = RoundStopper(Looks.planned(60, 10, not precise), ("fp32", "v"), rivals, compare_top1=False)
    slices = interleave([ref, var], [scenario], plan, {"v": stopper})
    return stopper.fields("latency"), len(slices["v"]["latency"])


def test_interleave_stops_where_the_rule_says_and_records_why():
    assert _interleave(5.0, 0.01) == ({"rounds": 15, "stopped": "tight"}, 15)
    rivals = rivals_from_rows(
        [{"status": "ok", "recipe": "fast", "scenario": "latency", "paired": {"ci95": [0.2, 0.25]}}]
    )
    assert rivals == {"latency": [Rival("fast", 4.0, None)]}
    first_group = with_reference({}, ["latency", "throughput"], 90.0)
    assert first_group == {s: [Rival("fp32", 1.0, 90.0)] for s in ("latency", "throughput")}
    assert with_reference(rivals, ["latency"], 90.0)["latency"] == [Rival("fast", 4.0, None), Rival("fp32", 1.0, 90.0)]
    assert _interleave(30.0, 0.3, first_group) == ({"rounds": 15, "stopped": "settled (below fp32)"}, 15)
    assert _interleave(8.0, 0.3, rivals) == ({"rounds": 15, "stopped": "settled (below fast)"}, 15)
    assert _interleave(5.0, 0.01, precise=True) == ({"rounds": 60, "stopped": "maximum"}, 60)


def test_sweep_rows_say_how_their_rounds_stopped(cli, tiny_ckpt, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(tiny_ckpt, folder / "model.pt")
    recipes = "fp32,fp32-cl,ptq(ort),prune(0.5,finetune=0)"
    args = ["bench", "model.pt", "--recipes", recipes, "--rounds", "20", "--run-id", "s"]
    proc = cli([*args, "--no-progress", "--threads", "1"], cwd=folder, env={"OPTBENCH_RESULTS": "out"}, timeout=900)
    assert proc.returncode == 0, proc.stderr
    run = folder / "out" / "runs" / "s"
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    variants = [r for r in rows if r["recipe"] != "fp32"]
    assert len(variants) == 6 and all(r["status"] == "ok" for r in rows)
    order = [r["recipe"].split("(")[0] for r in variants[::2]]
    assert order == ["ptq", "prune", "fp32-cl"], order  # INT8 and pruning first: the likely leaders
    pruned = next(r for r in variants if r["recipe"].startswith("prune"))
    assert "skipped" in pruned["manifest"]["steps"][0]["speed_check"]  # the sweep times it; the build need not
    for row in variants:
        assert row["stopped"].split(" ")[0] in {"tight", "settled", "maximum", "time"}, row["stopped"]
        assert 10 <= row["rounds"] <= 20 and row["paired"]["rounds"] == row["rounds"]
        assert row["paired"]["looks"] == [10, 15, 20] and row["paired"]["look_alpha"] == 0.0221
        assert row["top1"] > (0 if row is pruned or row["recipe"] == pruned["recipe"] else 50)
    with open(run / "leaderboard.csv") as fh:
        board = {r["variant"]: r for r in csv.DictReader(fh)}
    assert board["ptq(ort)"]["latency_stopped"] and board["ptq(ort)"]["latency_rounds"]
    # Two variants at a time share the reference's rounds: fp32 took as many slices as the longer of each group.
    first, second = ["ptq(ort)", pruned["recipe"]], ["fp32-cl"]
    for scenario in ("latency", "throughput"):
        ref = next(r for r in rows if r["recipe"] == "fp32" and r["scenario"] == scenario)
        rounds = {r["recipe"]: r["rounds"] for r in variants if r["scenario"] == scenario}
        assert len(ref["slice_lengths"]) == max(rounds[r] for r in first) + rounds[second[0]]
    assert next(r for r in variants if r["recipe"] == "ptq(ort)")["pairing"]["timed_with"] == [pruned["recipe"]]
    assert next(r for r in variants if r["recipe"] == "fp32-cl")["pairing"]["timed_with"] == []


def test_variants_sharing_the_reference_run_next_to_it_in_both_orders():
    for sides in (3, 4):
        before = dict.fromkeys(range(1, sides), 0)
        for r in range(2 * (sides - 1)):
            order = round_order(r, sides, reference=0)
            assert sorted(order) == list(range(sides))
            centre = order.index(0)
            if sides == 3:  # both variants right before or right after the reference
                assert {order[centre - 1], order[centre + 1]} == {1, 2}
            for v in range(1, sides):
                before[v] += order.index(v) < centre
        assert set(before.values()) == {sides - 1}, before  # each variant before fp32 in half the rounds
    # Without a reference (the gate's processes): the plain rotation, as before.
    assert [round_order(r, 3) for r in range(3)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    assert [round_order(r, 2, reference=0) for r in range(3)] == [[0, 1], [1, 0], [0, 1]]


class FailingServer(FakeServer):
    def __init__(self, name: str, ms: float, sd: float, seed: int, lives: int) -> None:
        super().__init__(name, ms, sd, seed)
        self.lives = lives

    def slice(self, scenario, seconds, calls):
        self.lives -= 1
        if self.lives < 0:
            raise ServerError(f"{self.name} measurement process exited with code 1")
        return super().slice(scenario, seconds, calls)


def _group(*variants: tuple[str, FakeServer], rivals=None):
    scenario = ScenarioConfig("latency", 1, min_seconds=0.0, max_seconds=600)
    plan = PairingPlan(rounds=60, gap_s=0.0, min_rounds=10, calls_per_slice=1)
    ref = Side("fp32", [FakeServer("fp32", 10.0, 0.01, 1)])
    sides = [Side(name, [server]) for name, server in variants]
    shared = {"latency": list(rivals or [])}
    looks = Looks.planned(60, 10)
    stoppers = {s.name: RoundStopper(looks, ("fp32", s.name), shared, compare_top1=False) for s in sides}
    slices = interleave([ref, *sides], [scenario], plan, stoppers, reference=0)
    return ref, sides, stoppers, slices


def test_one_reference_serves_a_group_and_each_variant_stops_on_its_own():
    # A is tight at the first look; B's noise keeps it going; the reference takes every round either runs.
    ref, (a, b), stoppers, slices = _group(("A", FakeServer("A", 5.0, 0.01, 2)), ("B", FakeServer("B", 5.0, 0.4, 3)))
    assert stoppers["A"].fields("latency") == {"rounds": 15, "stopped": "tight"}
    b_rounds = stoppers["B"].fields("latency")["rounds"]
    assert b_rounds > 15 and len(slices["B"]["latency"]) == b_rounds == len(slices["fp32"]["latency"])
    assert len(slices["A"]["latency"]) == 15
    # Each variant's slices pair with the reference's of the same round: its positions say which came first.
    assert len(a.positions["latency"]) == 15 and len(ref.positions["latency"]) == b_rounds
    first = [x < y for x, y in zip(a.positions["latency"], ref.positions["latency"], strict=False)]
    assert 5 <= sum(first) <= 10
    assert all(abs(x - y) == 1 for x, y in zip(a.positions["latency"], ref.positions["latency"], strict=False))


def test_a_variant_that_stopped_settles_the_slower_one_of_its_group():
    _, _, stoppers, _ = _group(("fast", FakeServer("fast", 2.5, 0.01, 2)), ("slow", FakeServer("slow", 8.0, 0.3, 3)))
    assert stoppers["fast"].fields("latency")["stopped"] == "tight"
    assert stoppers["slow"].fields("latency") == {"rounds": 15, "stopped": "settled (below fast)"}


def test_a_partner_still_running_settles_the_slower_one_at_a_look():
    # "wide" never gets tight, so it runs to the maximum; its interval at the first look already settles "slow".
    _, _, stoppers, _ = _group(("wide", FakeServer("wide", 2.5, 0.3, 2)), ("slow", FakeServer("slow", 8.0, 0.3, 3)))
    assert stoppers["wide"].fields("latency") == {"rounds": 60, "stopped": "maximum"}
    assert stoppers["slow"].fields("latency") == {"rounds": 15, "stopped": "settled (below wide)"}


def test_a_variant_whose_process_dies_leaves_the_group_and_the_others_go_on():
    _, (dying, other), stoppers, slices = _group(
        ("dying", FailingServer("dying", 5.0, 0.01, 2, lives=4)), ("other", FakeServer("other", 5.0, 0.01, 3))
    )
    assert isinstance(dying.failure, ServerError) and len(slices["dying"]["latency"]) == 4
    assert other.failure is None and stoppers["other"].fields("latency") == {"rounds": 15, "stopped": "tight"}
    with pytest.raises(ServerError):  # the reference is every variant's: its failure ends the group
        ref = Side("fp32", [FailingServer("fp32", 10.0, 0.01, 1, lives=3)])
        var = Side("v", [FakeServer("v", 5.0, 0.01, 2)])
        stopper = RoundStopper(Looks.planned(60, 10), ("fp32", "v"), compare_top1=False)
        scenario = ScenarioConfig("latency", 1, min_seconds=0.0)
        interleave([ref, var], [scenario], PairingPlan(60, 0.0, 10), {"v": stopper})


def test_two_variants_share_the_reference_on_cpu_one_on_cuda_and_with_precise():
    from types import SimpleNamespace

    from bench.run.pairing import group_size

    def job(device: str, precise: bool = False):
        return SimpleNamespace(device=device, config=SimpleNamespace(precise=precise))

    assert group_size([job("cpu"), job("cpu")]) == 2
    assert group_size([job("cuda")]) == 1 and group_size([job("cpu", precise=True)]) == 1
