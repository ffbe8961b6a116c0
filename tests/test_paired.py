"""Interleaved measurement: the statistics on synthetic rounds, and real measurement processes on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from optbench_testing import tiny_config

from bench.config import Job
from bench.gate.series import Series
from bench.gate.stats import IMPROVED, REGRESSION, UNCHANGED, compare_timing
from bench.measure import paired_stats as paired
from bench.run.client import MeasurementServer, ServerError
from bench.run.schedule import PairingPlan, interleave
from bench.scenarios import ScenarioConfig


def _drifting_rounds(rng, rounds: int, per_slice: int, factor: float = 1.0, drift: np.ndarray | None = None):
    """Slices whose level drifts by up to +-30% from round to round (the VM's moods), times ``factor``."""
    drift = drift if drift is not None else np.exp(rng.normal(0, 0.15, rounds))
    return [list(10.0 * d * factor * rng.lognormal(0, 0.03, per_slice)) for d in drift]


def test_hodges_lehmann_interval_uses_signed_rank_critical_values(monkeypatch):
    # Tables of the two-sided 5% signed-rank test: n = 6 -> 0, 10 -> 8, 20 -> 52, 30 -> 137
    assert [paired._signed_rank_lower_count(n, 0.05) for n in (5, 6, 10, 20, 30)] == [-1, 0, 8, 52, 137]
    with monkeypatch.context() as mp:  # past EXACT_SIGNED_RANK_MAX rounds the normal approximation takes over
        mp.setattr(paired, "EXACT_SIGNED_RANK_MAX", 0)
        assert abs(paired._signed_rank_lower_count(30, 0.05) - 137) <= 1  # already close at n = 30
    x = np.arange(1.0, 11.0)  # n = 10: 55 Walsh averages; the interval is the 9th smallest to the 9th largest
    walsh = sorted((a + b) / 2 for i, a in enumerate(x) for b in x[i:])
    assert paired.hodges_lehmann(x) == (5.5, walsh[8], walsh[-9])
    assert paired.hodges_lehmann(np.array([3.0, 1.0, 2.0])) == (2.0, 1.0, 3.0)  # too few rounds: the whole range
    wild = np.array([0.0, 0.01, 0.02, 0.03, 0.5])  # one wild round leaves it among the others; the mean it drags
    assert 0.0 <= paired.hodges_lehmann(wild)[0] <= 0.03 < wild.mean()


def test_processes_differ_p_separates_offset_processes_from_noise():
    rng = np.random.default_rng(0)
    same = [np.exp(rng.normal(0, 0.09, 30)), np.exp(rng.normal(0, 0.09, 30))]
    apart = [np.exp(rng.normal(0, 0.09, 30)), np.exp(rng.normal(0.15, 0.09, 30))]
    assert paired.processes_differ_p(same) > 0.01 and paired.processes_differ_p(apart) < 0.01
    assert np.isnan(paired.processes_differ_p([np.ones(2), np.ones(5)]))  # too few rounds to say


def test_order_effect_finds_rounds_that_split_by_who_went_first():
    rng = np.random.default_rng(1)
    first = [r % 2 == 1 for r in range(60)]  # the variant goes first in odd rounds (two sides)
    noise = rng.normal(0.0, 0.1, 60)
    fair = paired.order_effect(np.exp(np.log(0.125) + noise), first)
    # The reference slowed 2x whenever it ran right after the variant: those ratios halve.
    disturbed = paired.order_effect(np.exp(np.log(0.125) + noise - np.log(2) * np.asarray(first)), first)
    assert fair is not None and fair.p > 0.01 and abs(fair.log_diff) < 0.1
    assert disturbed is not None and disturbed.p < 1e-6 and disturbed.log_diff == pytest.approx(np.log(2), abs=0.1)
    assert paired.order_effect(np.ones(4), [True, False, True, False]) is None  # too few rounds per order
    with pytest.raises(ValueError):
        paired.order_effect(np.ones(6), [True] * 5)


def test_sweep_rows_carry_the_order_effect():
    from bench.run.pairing import paired_info

    ref = [[0.010, 0.011]] * 8
    # Variant first in odd rounds (it is side 1 of [reference, variant]); the reference runs slow after it.
    var = [[0.002, 0.002] if r % 2 == 0 else [0.001, 0.001] for r in range(8)]
    info = paired_info(ref, var, variant_first=[r % 2 == 1 for r in range(8)])
    assert info["order_log_diff"] == pytest.approx(np.log(2), abs=1e-3) and 0 < info["order_p"] < 0.05


def test_split_checks_lengths():
    assert paired.split([1, 2, 3, 4, 5], [2, 3]) == [[1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="add up"):
        paired.split([1, 2, 3], [1, 1])


def test_pairing_cancels_drift_that_swamps_unpaired_comparison():
    rng = np.random.default_rng(0)
    drift = np.exp(rng.normal(0, 0.15, 20))
    base = _drifting_rounds(rng, 20, 10, drift=drift)
    slower = _drifting_rounds(rng, 20, 10, factor=1.10, drift=drift)
    est = paired.estimate(base, slower)
    assert est is not None and 1.07 < est.ratio < 1.13 and est.ci_low > 1.0
    assert est.p_slower < 1e-4 and est.p_faster > 0.5
    same = paired.estimate(base, _drifting_rounds(rng, 20, 10, drift=drift))
    assert 0.97 < same.ratio < 1.03 and same.p_slower > 0.001
    assert paired.estimate(base[:3], slower[:3]) is None  # too few rounds to say anything


def _paired_series(rounds_per_proc: list[list[list[float]]], session: str, scenario="latency", batch=1) -> Series:
    samples = [x for proc in rounds_per_proc for sl in proc for x in sl]
    return Series(
        "fp32",
        scenario,
        "cpu",
        scenario,
        samples_ms=samples,
        batch_size=batch,
        sessions=len(rounds_per_proc),
        chunks=[sum(len(sl) for sl in proc) for proc in rounds_per_proc],
        pairing=session,
        slice_lengths=[[len(sl) for sl in proc] for proc in rounds_per_proc],
    )


def test_gate_uses_the_paired_test_for_interleaved_sides():
    rng = np.random.default_rng(1)
    drift = np.exp(rng.normal(0, 0.2, 20))
    base = [_drifting_rounds(rng, 20, 8, drift=drift) for _ in range(2)]
    slow = [_drifting_rounds(rng, 20, 8, factor=1.10, drift=drift) for _ in range(2)]
    same = [_drifting_rounds(rng, 20, 8, drift=drift) for _ in range(2)]
    c = compare_timing(_paired_series(base, "s1"), _paired_series(slow, "s1"), 0.05)
    assert c.verdict == REGRESSION and c.note.startswith("interleaved") and 1.07 < c.ratio < 1.13
    assert compare_timing(_paired_series(base, "s1"), _paired_series(same, "s1"), 0.05).verdict == UNCHANGED
    # Throughput is judged in its own direction: 10% more time per batch is 9% fewer images per second.
    tb, ts = _paired_series(slow, "s1", "throughput", 16), _paired_series(base, "s1", "throughput", 16)
    c = compare_timing(tb, ts, 0.05)
    assert c.verdict == IMPROVED and c.ratio > 1.07
    # Sides from different sessions cannot be paired: the unpaired rank test decides.
    c = compare_timing(_paired_series(base, "s1"), _paired_series(slow, "s2"), 0.05)
    assert not c.note.startswith("interleaved")


def _scenarios() -> tuple[ScenarioConfig, ...]:
    return (
        ScenarioConfig("latency", 1, warmup_iters=2, warmup_seconds=0.0, min_iters=10, min_seconds=0.2),
        ScenarioConfig("throughput", 4, warmup_iters=1, warmup_seconds=0.0, min_iters=5, min_seconds=0.2),
    )


def _job(tmp_path: Path, ckpt: Path, recipe: str) -> Job:
    return tiny_config(ckpt, [recipe], scenarios=_scenarios()).job(recipe, str(tmp_path / "run"))


def _started(name: str, job: Job, log: Path) -> MeasurementServer:
    server = MeasurementServer(name, job, log)
    server.start()
    return server


def test_servers_time_alternating_slices_and_pool_them_into_rows(tmp_path, tiny_ckpt):
    plan = PairingPlan(rounds=6, gap_s=0.0)
    a = _started("a", _job(tmp_path, tiny_ckpt, "fp32"), tmp_path / "a.log")
    b = _started("b", _job(tmp_path, tiny_ckpt, "fp32-cl"), tmp_path / "b.log")
    try:
        a.accuracy()
        slices = interleave([a, b], _scenarios(), plan)
        rows_a, rows_b = a.finish(), b.finish()
    finally:
        a.close()
        b.close()
    assert all(len(slices[n][s.name]) == 6 for n in ("a", "b") for s in _scenarios())
    for row in rows_a + rows_b:
        assert row["status"] == "ok" and sum(row["slice_lengths"]) == len(row["samples_ms"]) == row["n"]
        scenario = next(s for s in _scenarios() if s.name == row["scenario"])
        # min_iters spread over the rounds: at least ceil(min_iters / rounds) calls a slice, whatever the clock did
        assert len(row["slice_lengths"]) == 6 and min(row["slice_lengths"]) >= plan.slice_budget(scenario)[1]
        assert 0 < row["idle_wait_ms_p50"] < 300  # each slice's reply waited for the pools to stop spinning
    assert rows_b[0]["agreement"] > 95  # the reference predictions were written by a.accuracy() first
    est = paired.estimate(slices["a"]["latency"], slices["b"]["latency"])
    assert est is not None and est.rounds == 6 and est.ratio > 0


def test_a_failing_build_is_one_line_server_error(tmp_path, tiny_ckpt):
    with pytest.raises(ServerError) as exc:
        _started("bad", _job(tmp_path, tiny_ckpt, "ptq(tensorrt)"), tmp_path / "bad.log")
    assert "\n" not in str(exc.value) and ("TensorRT" in str(exc.value) or "CUDA" in str(exc.value))


def test_gate_sim_simulates_the_interleaved_rule_on_recorded_sessions(tmp_path, capsys):
    from bench.gate.sim import main
    from data.errors import run_cli

    rng = np.random.default_rng(3)
    rows = []
    for session in ("s1", "s2"):
        drift = np.exp(rng.normal(0, 0.15, 20))
        for proc in range(6):
            slices = _drifting_rounds(rng, 20, 12, factor=float(np.exp(rng.normal(0, 0.01))), drift=drift)
            rows.append(
                {
                    "variant": "fp32",
                    "recipe": "fp32",
                    "device": "cpu",
                    "scenario": "latency",
                    "status": "ok",
                    "batch_size": 1,
                    "run_id": f"{session}-{proc}",
                    "samples_ms": [x for sl in slices for x in sl],
                    "slice_lengths": [len(sl) for sl in slices],
                    "pairing": {"session": session, "process": proc + 1, "rounds": 20},
                    "fingerprint": {"cpu_model": "fake", "threads": 1},
                }
            )
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SystemExit) as exc:
        run_cli(main, ["--samples", str(path), "--trials", "200", "--scenarios", "latency"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("interleaved:"))
    assert "worst A/A false-alarm rate 0.0%" in line and "MET" in line and "NOT MET" not in line
    table = next(ln for ln in out.splitlines() if "| interleaved" in ln)
    assert "| 12 " in table or "12 |" in table  # 2 sessions x 6 processes were available


def test_repeatability_reports_cov_across_runs(tmp_path, capsys):
    from bench.tools.repeatability import main
    from data.errors import run_cli

    def run(folder: str, p50_fp32: float, p50_x: float, paired_ratio: float) -> Path:
        rows = []
        for variant, p50 in (("fp32", p50_fp32), ("x", p50_x)):
            for scenario, batch in (("latency", 1), ("throughput", 16)):
                row = {"variant": variant, "recipe": variant, "device": "cpu", "scenario": scenario, "status": "ok"}
                row.update(p50_ms=p50 * batch, batch_size=batch, throughput_img_s=1e3 / p50)
                if variant == "x":
                    row["paired"] = {"time_ratio": paired_ratio, "ci95": [paired_ratio * 0.9, paired_ratio * 1.1]}
                rows.append(row)
        d = tmp_path / folder
        d.mkdir()
        (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return d

    a, b = run("a", 10.0, 5.0, 0.5), run("b", 13.0, 6.5, 0.5)  # the machine 30% slower, the ratio unchanged
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(a), str(b)])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith("| x "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "18.4%" and cells[4] == "0.0%"  # p50 moved with the machine; the paired speedup did not
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(a)])
    assert exc.value.code == 2
