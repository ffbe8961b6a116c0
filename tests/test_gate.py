"""``python -m bench.gate``: verdicts on synthetic samples with known shifts, config, bad input, A/B mode.

Synthetic samples are seeded draws, so verdicts are deterministic; no test asserts on a measured timing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FP = {
    "cpu_model": "Test CPU 9000",
    "threads": 2,
    "versions": {"torch": "2.14.1", "onnxruntime": "1.32.0"},
}


SHA = "4598b3e34a93df64f2ba86319071c222e3adb9c117858f49b8aa9cc5c5d6b925"  # the checkpoint every row records
OTHER_SHA = "0b7e1d2c9a8f" + "0" * 52


def _rows(
    variant="fp32", factor=1.0, seed=0, n=60, top1=99.0, thr_factor=None, fp=None, device="cpu", run_id="r1", sha=SHA
):
    rng = np.random.default_rng(seed)
    lat = (rng.lognormal(np.log(10.0), 0.05, n) * factor).round(4).tolist()
    thr = (rng.lognormal(np.log(80.0), 0.05, n) * (thr_factor or factor)).round(4).tolist()
    common = {
        "variant": variant,
        "recipe": variant,
        "device": device,
        "status": "ok",
        "top1": top1,
        "run_id": run_id,
        "checkpoint": "/data/ckpt/resnet10t.pt",
        "checkpoint_sha256": sha,
        "fingerprint": fp or FP,
    }
    return [
        {**common, "scenario": "latency", "batch_size": 1, "samples_ms": lat},
        {**common, "scenario": "throughput", "batch_size": 16, "samples_ms": thr},
    ]


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def gate(monkeypatch, capsys):
    """Run ``python -m bench.gate ARGS`` in this process (importing torch once, not once per call): the CLI's
    own entry point, exit code from SystemExit, stdout and stderr captured."""
    from bench.gate.cli import main
    from data.errors import run_cli

    def run(args: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        try:
            run_cli(main, [str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        for key in env or {}:
            monkeypatch.delenv(key, raising=False)
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


def _verdicts(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and "/" in parts[0] and len(parts) > 3:
            for word in ("REGRESSION", "BROKEN", "improved", "unchanged", "inconclusive", "missing", "new", "skipped"):
                if word in parts:
                    out[parts[0]] = word
                    break
    return out


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working directory with its own pyproject.toml (5%), so the repo's settings never leak in."""
    d = tmp_path / "w"
    d.mkdir()
    (d / "pyproject.toml").write_text('[tool.optbench.gate]\nthreshold = "5%"\n')
    return d


def test_clear_regression_is_flagged_and_summarised(work: Path, gate):
    base = _write(work / "base.jsonl", _rows(seed=1))
    cand = _write(work / "cand" / "results.jsonl", _rows(seed=2, factor=1.4))  # past the one-run spread (25%)
    step = work / "step.md"
    proc = gate([base, cand, "--json", work / "v.json"], work, env={"GITHUB_STEP_SUMMARY": str(step)})
    assert proc.returncode == 1, proc.stderr
    v = _verdicts(proc.stdout)
    assert v["fp32/latency"] == "REGRESSION"
    assert v["fp32/throughput"] == "REGRESSION"  # 40% more time per batch = fewer img/s
    assert v["fp32/top1"] == "unchanged"
    assert "Mann-Whitney U" in proc.stdout and "p < 0.001" in proc.stdout
    summary = (work / "cand" / "gate-summary.md").read_text()
    assert "## Benchmark gate: FAIL" in summary and "| fp32/latency | cpu |" in summary
    assert step.read_text() == summary + "\n"
    payload = json.loads((work / "v.json").read_text())
    lat = next(c for c in payload["comparisons"] if c["bench_id"] == "fp32/latency")
    assert lat["verdict"] == "REGRESSION" and 1.35 < lat["ratio"] < 1.45 and lat["p_value"] < 1e-6


def test_one_run_a_side_needs_a_change_past_the_run_to_run_spread(work: Path, gate):
    """Fresh processes of the same code differ by 10-15%: with one run on a side, a 15% slowdown that the rank test
    calls significant is inconclusive (exit 0, said why); 40% is a regression."""
    base = _write(work / "base.jsonl", _rows(seed=1))
    drift = _write(work / "drift.jsonl", _rows(seed=2, factor=1.15))
    proc = gate([base, drift], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout)["fp32/latency"] == "inconclusive"
    assert "one run on a side: a change under 25% cannot be told from run-to-run drift" in proc.stdout
    slow = _write(work / "slow.jsonl", _rows(seed=2, factor=1.4))
    assert _verdicts(gate([base, slow], work).stdout)["fp32/latency"] == "REGRESSION"


def test_noise_only_is_not_flagged(work: Path, gate):
    base = _write(work / "base.jsonl", _rows(seed=1))
    cand = _write(work / "cand.jsonl", _rows(seed=2))
    proc = gate([base, cand], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(_verdicts(proc.stdout).values()) == {"unchanged"}
    assert "PASS" in proc.stdout


def test_improvement_is_reported_as_improvement(work: Path, gate):
    base = _write(work / "base.jsonl", _rows(seed=1))
    cand = _write(work / "cand.jsonl", _rows(seed=2, factor=0.7, top1=99.5))
    proc = gate([base, cand], work)
    assert proc.returncode == 0
    v = _verdicts(proc.stdout)
    assert v["fp32/latency"] == "improved" and v["fp32/throughput"] == "improved"
    assert "2 improved" in proc.stdout


def test_direction_throughput_and_top1(work: Path, gate):
    from bench.gate.series import Series
    from bench.gate.stats import compare_timing
    from bench.gate.values import compare_top1

    rng = np.random.default_rng(0)
    t = rng.lognormal(np.log(100), 0.03, 50)
    base = Series("v", "throughput", "cpu", "throughput", samples_ms=t.tolist(), batch_size=16)
    slower = Series("v", "throughput", "cpu", "throughput", samples_ms=(t * 1.4).tolist(), batch_size=16)
    faster = Series("v", "throughput", "cpu", "throughput", samples_ms=(t / 1.4).tolist(), batch_size=16)
    drop = compare_timing(base, slower, 0.05)
    assert drop.verdict == "REGRESSION" and drop.ratio < 0.75  # img/s fell: higher is better
    assert compare_timing(base, faster, 0.05).verdict == "improved"
    b1 = Series("v", "top1", "cpu", "top1", value=95.0)
    assert compare_top1(b1, Series("v", "top1", "cpu", "top1", value=93.5), 1.0).verdict == "REGRESSION"
    assert compare_top1(b1, Series("v", "top1", "cpu", "top1", value=94.5), 1.0).verdict == "unchanged"
    assert compare_top1(b1, Series("v", "top1", "cpu", "top1", value=97.0), 1.0).verdict == "improved"
    # Through the CLI: same timings, top-1 down 2 points fails; a 3-point budget lets it pass.
    b = _write(work / "b.jsonl", _rows(seed=1, top1=95.0))
    c = _write(work / "c.jsonl", _rows(seed=2, top1=93.0))
    proc = gate([b, c], work)
    assert proc.returncode == 1 and _verdicts(proc.stdout)["fp32/top1"] == "REGRESSION"
    assert gate([b, c, "--top1-budget", "3"], work).returncode == 0
    # Throughput got better while latency held: nothing fails.
    c2 = _write(work / "c2.jsonl", _rows(seed=2, thr_factor=0.7, factor=1.0))
    assert _verdicts(gate([b, c2, "--top1-budget", "9"], work).stdout)["fp32/throughput"] == "improved"


def test_thresholds_from_pyproject_and_command_line(tmp_path: Path, gate):
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    base = _write(proj / "base.jsonl", _rows(seed=1))
    cand = _write(proj / "cand.jsonl", _rows(seed=2, factor=1.3, thr_factor=1.08))  # latency +30%, img/s -7%
    (proj / "pyproject.toml").write_text('[tool.optbench.gate]\nthreshold = "40%"\n')
    proc = gate([base, cand], proj / "sub")  # found by walking up from the working directory
    assert proc.returncode == 0, proc.stdout
    assert "threshold 40%" in proc.stdout
    (proj / "pyproject.toml").write_text(
        '[tool.optbench.gate]\nthreshold = "10%"\n[tool.optbench.gate.thresholds]\n'
        '"*/latency" = "50%"\n"fp32/latency" = "3%"\n'
    )
    proc = gate([base, cand], proj)
    assert proc.returncode == 1
    v = _verdicts(proc.stdout)
    assert v["fp32/latency"] == "REGRESSION"  # the longer, more specific pattern wins
    assert v["fp32/throughput"] == "unchanged"  # 8% is within the 10% default
    assert gate([base, cand, "--threshold", "45%"], proj).returncode == 0
    (proj / "pyproject.toml").write_text('[tool.optbench.gate]\nthreshold = "5"\n')
    proc = gate([base, cand], proj)
    assert proc.returncode == 2 and "ambiguous" in proc.stderr


def test_machine_mismatch_exits_2_unless_allowed(work: Path, gate):
    other = {**FP, "cpu_model": "Other CPU 1"}
    base = _write(work / "base.jsonl", _rows(seed=1, fp=other))
    cand = _write(work / "cand.jsonl", _rows(seed=2))
    proc = gate([base, cand], work)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "different machines" in proc.stderr and "Other CPU 1" in proc.stderr
    proc = gate([base, cand, "--allow-machine-mismatch"], work)
    assert proc.returncode == 0
    assert "crosses machines" in proc.stdout
    assert "crosses machines" in (work / "gate-summary.md").read_text()


def test_baseline_folder_picks_this_machine(work: Path, gate):
    folder = work / "baselines"
    _write(folder / "other-machine.jsonl", _rows(seed=5, factor=2.0, fp={**FP, "cpu_model": "Other"}))
    _write(folder / "this-machine.jsonl", _rows(seed=1))
    cand = _write(work / "cand.jsonl", _rows(seed=2))
    proc = gate([folder, cand], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "this-machine.jsonl" in proc.stdout and "other-machine" not in proc.stdout
    # A baselines folder (or a run folder) also holds JSON the gate does not compare: it is passed over.
    (folder / "round-ratios-resnet50.json").write_text(json.dumps({"machine": "x", "ratios": [[1.0, 1.1]]}))
    (folder / "run_config.json").write_text(json.dumps({"version": 3, "recipes": ["fp32"]}))
    proc = gate([folder, cand], work)
    assert proc.returncode == 0 and "this-machine.jsonl" in proc.stdout, proc.stdout + proc.stderr
    (folder / "this-machine.jsonl").write_text('{"variant": "fp32", "scenario": "latency"}\n{broken')
    proc = gate([folder, cand], work)  # a damaged benchmark file is still reported, not passed over
    assert proc.returncode == 2 and "this-machine.jsonl" in proc.stderr, proc.stdout + proc.stderr


def test_broken_variant_fails_and_missing_is_listed(work: Path, gate):
    base = _write(work / "base.jsonl", _rows(seed=1) + _rows("fp32-cl", seed=3))
    broken = {
        "variant": "fp32-cl",
        "recipe": "fp32-cl",
        "device": "cpu",
        "scenario": "*",
        "status": "failed",
        "error": "RuntimeError: boom",
    }
    cand = _write(work / "cand.jsonl", _rows(seed=2) + [broken])
    proc = gate([base, cand], work)
    assert proc.returncode == 1
    v = _verdicts(proc.stdout)
    assert v["fp32-cl/latency"] == "BROKEN" and v["fp32/latency"] == "unchanged"
    only_base = _write(work / "cand2.jsonl", _rows(seed=2))
    proc = gate([base, only_base], work)
    assert proc.returncode == 0 and _verdicts(proc.stdout)["fp32-cl/latency"] == "missing"


def _status_row(variant: str, status: str = "failed", reason: str = "RuntimeError: boom") -> dict:
    """What bench.run.process.status_row writes for a variant that produced no measurement."""
    return {
        "schema": 1,
        "run_id": "r2",
        "variant": variant,
        "recipe": variant,
        "device": "cpu",
        "scenario": "*",
        "status": status,
        "error" if status == "failed" else "reason": reason,
        "timestamp": "2026-11-22T23:25:22+0000",
    }


def test_every_candidate_variant_failed_is_broken_not_bad_input(work: Path, gate):
    base = _write(work / "base.jsonl", _rows(seed=1) + _rows("fp32-cl", seed=3))
    cand = _write(work / "cand.jsonl", [_status_row("fp32"), _status_row("fp32-cl")])
    proc = gate([base, cand], work)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no benchmark is in both files" not in proc.stderr
    v = _verdicts(proc.stdout)
    names = {f"{var}/{m}" for var in ("fp32", "fp32-cl") for m in ("latency", "throughput", "top1")}
    assert v == dict.fromkeys(names, "BROKEN")
    assert "FAIL: 6 broken: " in proc.stdout and "(cpu); 0 compared, 6 broken\n" in proc.stdout
    assert "candidate failed: RuntimeError: boom" in proc.stdout
    # Failed on both sides: nothing was measured to compare, so it is bad input, said without listing names twice.
    both = _write(work / "base-failed.jsonl", [_status_row("fp32")])
    proc = gate([both, cand], work)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "nothing to compare: no benchmark ran in both files (3 skipped" in proc.stderr
    assert "baseline has" not in proc.stderr


def test_no_overlap_message_names_what_each_side_has(work: Path, gate):
    a = _write(work / "a.jsonl", _rows("fp32") + [_status_row("fp32-cl")])
    b = _write(work / "b.jsonl", _rows("bf16", device="cuda"))
    proc = gate([a, b, "--allow-machine-mismatch"], work)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    base_part, cand_part = proc.stderr.split("baseline has ")[1].split("; candidate has ")
    base_names, cand_names = set(base_part.split(", ")), set(cand_part.strip().split(", "))
    assert {"fp32/latency@cpu", "fp32-cl/latency@cpu"} <= base_names and "bf16/latency@cuda" in cand_names
    assert not base_names & cand_names


def test_other_checkpoint_is_refused_unless_allowed(work: Path, gate):
    base = _write(work / "base.jsonl", _rows(seed=1))
    same = _write(work / "same.jsonl", _rows(seed=2))
    proc = gate([base, same], work)
    assert proc.returncode == 0 and f"checkpoint: sha256 {SHA[:12]} on both sides" in proc.stdout
    other = _write(work / "other" / "results.jsonl", _rows(seed=2, sha=OTHER_SHA))
    proc = gate([base, other], work)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stdout == ""
    assert f"baseline checkpoint sha256 {SHA[:12]}; candidate {OTHER_SHA[:12]}" in proc.stderr
    assert "--allow-other-checkpoint" in proc.stderr
    proc = gate([base, other, "--allow-other-checkpoint"], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warning = [ln for ln in proc.stdout.splitlines() if ln.startswith("WARNING: different checkpoints")]
    assert len(warning) == 1 and SHA[:12] in warning[0] and OTHER_SHA[:12] in warning[0]
    assert (
        f"**Warning:** different checkpoints (baseline checkpoint sha256 {SHA[:12]}"
        in (work / "other" / "gate-summary.md").read_text()
    )


def test_headline_counts_compared_new_and_missing(work: Path, gate):
    base = _write(work / "base.jsonl", _rows(seed=1) + _rows("old", seed=4))
    new = [r for i, v in enumerate(("n1", "n2", "n3")) for r in _rows(v, seed=10 + i)]
    cand = _write(work / "cand.jsonl", _rows(seed=2) + new)
    proc = gate([base, cand], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "PASS: no regression; 3 compared, 9 new, 3 missing"
    assert "PASS: no regression; 3 compared, 9 new, 3 missing" in (work / "gate-summary.md").read_text()
    v = _verdicts(proc.stdout)
    assert [v[f"{x}/latency"] for x in ("fp32", "n1", "old")] == ["unchanged", "new", "missing"]


# ------------------------------------------------- scenarios the gate does not know by name (registered by a test)


class _OneValue:
    """Test scenarios whose figure is one number a row (no per-call samples), as a serving scenario's will be."""

    @staticmethod
    def make(name: str, headline: str, higher: bool, unit: str):
        from bench.scenarios.base import Scenario

        class OneValue(Scenario):
            description = "test-only: one figure a row"
            default = False
            paired = False
            samples_field = None

            def config(self, options, device):
                return None

        scen = OneValue()
        scen.name, scen.headline, scen.higher_is_better, scen.unit = name, headline, higher, unit
        return scen


@pytest.fixture
def one_value_scenarios():
    """Register ``servetest`` (max request rate, higher is better) and ``servelat`` (p99 at a rate, lower is
    better) for one test, and take them out again so no other test sees them."""
    import bench.scenarios as scenarios

    scenarios.all_scenarios()  # the built-in ones first, as in a real run
    added = [
        scenarios.register(_OneValue.make("servetest", "max_rate", True, "req/s")),
        scenarios.register(_OneValue.make("servelat", "p99_ms_at_rate", False, "ms")),
    ]
    try:
        yield added
    finally:
        for scen in added:
            scenarios._REGISTRY.pop(scen.name, None)


def _served(rows: list[dict], rate: float, p99: float) -> list[dict]:
    """``rows`` plus one row of each one-value scenario, sharing the run's fields (fingerprint, checkpoint)."""
    common = {k: v for k, v in rows[0].items() if k not in ("scenario", "batch_size", "samples_ms")}
    return rows + [
        {**common, "scenario": "servetest", "max_rate": rate},
        {**common, "scenario": "servelat", "p99_ms_at_rate": p99},
    ]


@pytest.mark.parametrize(
    "rate, p99, code, verdicts",
    [
        (80.0, 20.0, 1, ("REGRESSION", "unchanged")),  # the rate fell 20%: beyond 5%, higher is better
        (120.0, 20.0, 0, ("improved", "unchanged")),
        (102.0, 24.0, 1, ("unchanged", "REGRESSION")),  # p99 rose 20%: lower is better
        (100.0, 16.0, 0, ("unchanged", "improved")),
    ],
)
def test_one_value_scenario_is_judged_by_its_ratio_and_direction(
    work: Path, gate, one_value_scenarios, rate, p99, code, verdicts
):
    base = _write(work / "base.jsonl", _served(_rows(seed=1), 100.0, 20.0))
    cand = _write(work / "cand.jsonl", _served(_rows(seed=2), rate, p99))
    proc = gate([base, cand, "--json", work / "v.json"], work)
    assert proc.returncode == code, proc.stdout + proc.stderr
    v = _verdicts(proc.stdout)
    assert (v["fp32/servetest"], v["fp32/servelat"]) == verdicts
    assert v["fp32/latency"] == v["fp32/throughput"] == "unchanged"  # the sampled scenarios as before
    rows = {c["bench_id"]: c for c in json.loads((work / "v.json").read_text())["comparisons"]}
    serve = rows["fp32/servetest"]
    assert serve["p_value"] is None and "no p-value" in serve["note"] and serve["ratio"] == pytest.approx(rate / 100)
    assert serve["unit"] == "req/s" and rows["fp32/servelat"]["unit"] == "ms"
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("fp32/servetest"))
    assert " -5% " in line and "req/s" in line  # the limit points down for a rate
    assert " +5% " in next(ln for ln in proc.stdout.splitlines() if ln.startswith("fp32/servelat"))
    assert "one-value scenarios = ratio past the limit alone" in proc.stdout
    names = [ln.split()[0] for ln in proc.stdout.splitlines() if ln.startswith("fp32/")]
    assert names == ["fp32/latency", "fp32/throughput", "fp32/servetest", "fp32/servelat", "fp32/top1"]


def test_failed_variant_is_broken_in_every_scenario_the_baseline_had(work: Path, gate, one_value_scenarios):
    base = _write(work / "base.jsonl", _served(_rows(seed=1), 100.0, 20.0))
    cand = _write(work / "cand.jsonl", [_status_row("fp32")])
    proc = gate([base, cand], work)
    assert proc.returncode == 1
    assert set(_verdicts(proc.stdout).values()) == {"BROKEN"} and len(_verdicts(proc.stdout)) == 5


def test_scenario_unknown_here_is_skipped_not_guessed(work: Path, gate):
    """Runs after the tests above: their scenarios are gone again, so their rows read as unknown."""
    from bench.scenarios import all_scenarios

    assert not {"servetest", "servelat"} & {s.name for s in all_scenarios()}
    base = _write(work / "base.jsonl", _served(_rows(seed=1), 100.0, 20.0))
    cand = _write(work / "cand.jsonl", _served(_rows(seed=2), 50.0, 20.0))
    proc = gate([base, cand], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    v = _verdicts(proc.stdout)
    assert v["fp32/servetest"] == "skipped" and v["fp32/latency"] == "unchanged"
    assert "scenario 'servetest' is unknown to this optbench" in proc.stdout
    assert "PASS: no regression; 3 compared, 2 skipped" in proc.stdout


def _pytest_benchmark_json(tmp_path: Path, name: str) -> Path:
    """A real pytest-benchmark JSON from a tiny benchmark with optbench's extra_info."""
    d = tmp_path / f"pb-{name}"
    d.mkdir()
    (d / "test_tiny.py").write_text(
        "def test_fp32_latency(benchmark):\n"
        "    benchmark.extra_info.update(variant='fp32', scenario='latency', device='cpu', batch_size=1, top1=99.0)\n"
        "    benchmark.pedantic(lambda: sum(range(200)), rounds=30, iterations=5, warmup_rounds=2)\n"
    )
    out = d / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tiny.py", f"--benchmark-json={out}"],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_pytest_benchmark_json_and_missing_samples(work: Path, tmp_path: Path, gate):
    a = _pytest_benchmark_json(tmp_path, "a")
    proc = gate([a, a], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    v = _verdicts(proc.stdout)
    assert v == {"fp32/latency": "unchanged", "fp32/top1": "unchanged"}  # matched by extra_info, not by name
    assert "30/30" in proc.stdout
    doc = json.loads(a.read_text())
    for b in doc["benchmarks"]:
        b["stats"].pop("data")
    stripped = work / "nodata.json"
    stripped.write_text(json.dumps(doc))
    proc = gate([stripped, a], work)
    assert proc.returncode == 2 and "--benchmark-save-data" in proc.stderr and proc.stderr.count("\n") == 1
    # pytest bench records the checkpoint in the file's optbench block: two checkpoints are refused there too.
    for name, sha in (("ck-a.json", SHA), ("ck-b.json", OTHER_SHA)):
        (work / name).write_text(json.dumps({**json.loads(a.read_text()), "optbench": {"checkpoint_sha256": sha}}))
    assert gate([work / "ck-a.json", work / "ck-a.json"], work).returncode == 0
    proc = gate([work / "ck-a.json", work / "ck-b.json"], work)
    assert proc.returncode == 2 and f"candidate {OTHER_SHA[:12]}" in proc.stderr


def test_in_process_timings_never_meet_isolated_ones(work: Path, tmp_path: Path, gate):
    """pytest bench times every variant in its one process; python -m bench in processes of their own. The same
    code reads differently the two ways, so a comparison across them is refused, whatever the file format."""
    suite_json = _pytest_benchmark_json(tmp_path, "suite")
    sweep = _write(work / "sweep.jsonl", _rows("fp32"))
    from bench.suite_report import EXECUTOR

    suite_rows = _write(work / "suite.jsonl", [{**r, "executor": EXECUTOR} for r in _rows("fp32")])
    for base, cand in ((suite_json, sweep), (sweep, suite_rows)):
        proc = gate([base, cand, "--allow-machine-mismatch"], work)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "timed=in the pytest process" in proc.stderr and "timed=in processes of their own" in proc.stderr
        assert proc.stderr.count("\n") == 1
    proc = gate([suite_rows, suite_rows], work)  # the suite's results.jsonl against itself: one way of timing
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_one_line_error_in_a_real_process(tmp_path: Path, cli):
    proc = cli(["bench.gate", str(tmp_path / "nope.jsonl"), str(tmp_path / "nope2.jsonl")])
    assert proc.returncode == 2
    assert proc.stderr == f"error: file not found: {tmp_path / 'nope2.jsonl'}\n" or "file not found" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        ('{"foo": 1}', "neither a pytest-benchmark JSON"),
        ("not json at all\n", "is not JSON"),
        ("", "is empty"),
        ('{"variant": "fp32", "scenario": "latency", "device": "cpu", "status": 7}\n', "row 1 status is 7"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(work: Path, content, message, gate):
    good = _write(work / "good.jsonl", _rows())
    bad = work / "bad.json"
    if content is not None:
        bad.write_text(content)
    proc = gate([good, bad], work)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1 and message in proc.stderr
    assert proc.stdout == ""


def test_outputs_never_replace_what_is_not_the_gate_s_own(work: Path, gate):
    """--json/--summary: a checkpoint, an input, a folder or a missing folder is one line, exit 2, before any work,
    and nothing on disk changes; the gate's own earlier outputs are replaced as a re-run expects."""
    base = _write(work / "base.jsonl", _rows(seed=1))
    cand = _write(work / "cand" / "results.jsonl", _rows(seed=2))
    ckpt = work / "model.pt"
    ckpt.write_bytes(b"PK\x03\x04 a checkpoint")
    (work / "binary.toml").write_bytes(b"\x80\x81 not text")
    before = {p: p.read_bytes() for p in (base, cand, ckpt)}
    cases = [
        (["--json", ckpt], "exists and is not an earlier gate output"),
        (["--json", base], "exists and is not an earlier gate output"),
        (["--summary", cand], "exists and is not an earlier gate output"),
        (["--json", work / "cand"], "is a folder"),
        (["--summary", work / "nowhere" / "s.md"], "does not exist; create it first"),
        (["--config", work / "binary.toml"], "cannot read"),
    ]
    for extra, message in cases:
        proc = gate([base, cand, *extra], work)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1 and message in proc.stderr, extra
        assert proc.stdout == "" and not (work / "cand" / "gate-summary.md").exists()  # refused before any work
    assert {p: p.read_bytes() for p in (base, cand, ckpt)} == before and not (work / "nowhere").exists()
    for _ in range(2):  # a re-run replaces the gate's own outputs
        proc = gate([base, cand, "--json", work / "v.json", "--summary", work / "s.md"], work)
        assert proc.returncode == 0, proc.stderr
    assert json.loads((work / "v.json").read_text())["verdict"] == "pass"
    assert (work / "s.md").read_text().startswith("## Benchmark gate: PASS")


def test_no_overlap_and_usage_errors(work: Path, gate):
    a = _write(work / "a.jsonl", _rows("fp32"))
    b = _write(work / "b.jsonl", _rows("bf16"))
    proc = gate([a, b], work)
    assert proc.returncode == 2 and "no benchmark is in both files" in proc.stderr
    proc = gate([a], work)
    assert proc.returncode == 2 and "BASELINE and CANDIDATE" in proc.stderr
    proc = gate([a, a, "--alpha", "2"], work)
    assert proc.returncode == 2 and "alpha" in proc.stderr
    nosamples = _write(work / "ns.jsonl", [{k: v for k, v in r.items() if k != "samples_ms"} for r in _rows()])
    proc = gate([nosamples, a], work)
    assert proc.returncode == 2 and "no samples_ms" in proc.stderr


def test_too_few_samples_are_called_out(work: Path, gate):
    base = _write(work / "base.jsonl", _rows(seed=1, n=5))
    cand = _write(work / "cand.jsonl", _rows(seed=2, n=5, factor=1.5))
    proc = gate([base, cand], work)
    assert proc.returncode == 0  # the gate cannot reach p < 0.001 with 5 vs 5 and says so instead of guessing
    assert "inconclusive" in proc.stdout and "collect >= 7 per side" in proc.stdout


# ---------------------------------------------------------------------------------------------- A/B mode

FAKE_BENCH = """\
import json, os, sys, zlib
from pathlib import Path
import numpy as np

FACTOR = {factor}
run_id = sys.argv[1]
out = Path(os.environ["OPTBENCH_RESULTS"]) / "runs" / run_id
out.mkdir(parents=True)
with open(os.environ["AB_ORDER_FILE"], "a") as fh:
    fh.write(run_id + "\\n")
rng = np.random.default_rng(zlib.crc32(run_id.encode()))
samples = (rng.lognormal(np.log(10.0), 0.05, 40) * FACTOR).tolist()
row = {{"variant": "tiny", "recipe": "tiny", "device": "cpu", "scenario": "latency", "status": "ok",
       "batch_size": 1, "samples_ms": samples, "top1": 90.0, "run_id": run_id,
       "fingerprint": {{"cpu_model": "fake", "threads": 1}}}}
(out / "results.jsonl").write_text(json.dumps(row) + "\\n")
"""


def _git(args: list[str], cwd: Path) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _worktrees(repo: Path) -> int:
    out = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True, check=True).stdout
    return len(out.strip().splitlines())


def test_ab_mode_with_injected_bench_command(tmp_path: Path, gate):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(["init", "-q", "-b", "main"], repo)
    (repo / "fakebench.py").write_text(FAKE_BENCH.format(factor=1.0))
    _git(["add", "."], repo)
    _git(["commit", "-q", "-m", "base"], repo)
    (repo / "fakebench.py").write_text(FAKE_BENCH.format(factor=1.25))  # head: 25% slower, uncommitted
    order = tmp_path / "order.txt"
    out = tmp_path / "ab"
    args = ["--ab", "main", "--rounds", "2", "--out", out, "--bench-cmd", "{python} fakebench.py {run_id}"]
    proc = gate(args, repo, env={"AB_ORDER_FILE": str(order)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout)["tiny/latency"] == "REGRESSION"
    assert "80/80" in proc.stdout  # 2 rounds x 40 samples pooled per side
    assert order.read_text().split() == ["ab-base-1", "ab-head-1", "ab-head-2", "ab-base-2"]
    assert (out / "gate-summary.md").is_file() and "A/B mode" in (out / "gate-summary.md").read_text()
    assert _worktrees(repo) == 1  # the temporary base worktree is gone
    # The same code on both sides passes.
    (repo / "fakebench.py").write_text(FAKE_BENCH.format(factor=1.0))
    proc = gate([*args[:-4], "--out", tmp_path / "ab2", *args[-2:]], repo, env={"AB_ORDER_FILE": str(order)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # An --out holding an earlier A/B run is refused before any work (its logs are kept).
    before = order.read_text()
    proc = gate(args, repo, env={"AB_ORDER_FILE": str(order)})
    assert proc.returncode == 2 and "exists and is not an empty folder" in proc.stderr, proc.stderr
    assert order.read_text() == before and _worktrees(repo) == 1
    # A ref that does not exist is bad input.
    proc = gate(["--ab", "no-such-ref", "--bench-cmd", "{python} fakebench.py {run_id}"], repo)
    assert proc.returncode == 2 and proc.stderr.startswith("error: git rev-parse")


@pytest.mark.slow
def test_ab_mode_real_benchmark_on_tiny_model(tmp_path: Path, tiny_ckpt: Path, gate):
    """The default path: python -m bench --quick in both trees of a throwaway copy of optbench."""
    repo = tmp_path / "optbench"
    repo.mkdir()
    for pkg in ("bench", "models", "optim", "data"):
        shutil.copytree(REPO / pkg, repo / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    _git(["init", "-q", "-b", "main"], repo)
    _git(["add", "."], repo)
    _git(["commit", "-q", "-m", "base"], repo)
    (repo / "bench" / "CHANGED").write_text("head differs from base\n")
    out = tmp_path / "ab"
    args = ["--ab", "HEAD", "--rounds", "7", "--processes", "1", "--ckpt", tiny_ckpt, "--recipes", "fp32", "--out", out]
    proc = gate([*args, "--data", "digits"], repo)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # timings on a shared box: no verdict asserted
    v = _verdicts(proc.stdout)
    assert {"fp32/latency", "fp32/throughput", "fp32/top1"} <= set(v)
    assert v["fp32/top1"] == "unchanged"  # same weights, same validation split
    assert len(list((out / "base").rglob("results.jsonl"))) == 1
    assert len(list((out / "head").rglob("results.jsonl"))) == 1
    assert _worktrees(repo) == 1


def test_ab_data_reaches_both_sides_as_an_absolute_path(tmp_path: Path, gate, monkeypatch):
    """--data is read from the folder the gate runs in; each side runs in its own tree, so it travels absolute."""
    from bench.gate.ab import ABConfig, _command
    from data.loaders import resolve_spec
    from models.cli_args import load_spec

    (tmp_path / "ds").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = ABConfig(base_ref="HEAD", data=resolve_spec("ds"))
    cmd = _command(cfg, load_spec("m.pt", None, None, None, None), "ab-base-1", tmp_path / "r")
    assert cmd[cmd.index("--data") + 1] == str(tmp_path / "ds")
    assert "--data" not in _command(ABConfig(base_ref="HEAD"), load_spec("m.pt", None, None, None, None), "x", tmp_path)
    proc = gate(["--ab", "HEAD", "--data", "ds"], tmp_path)
    assert proc.returncode == 2 and "describe --ckpt; pass it too" in proc.stderr


def test_runs_at_another_input_size_or_on_other_images_are_refused(work: Path, gate):
    """The same checkpoint at 64 px against 32 px is slower because the question changed; a top-1 on 33 images
    against 30 others is not an improvement. Both are one line, exit 2, naming what differs."""
    base = _write(work / "a.jsonl", [{**r, "img_size": 32, "data_spec": "dogs", "val_images": 30} for r in _rows()])
    bigger = _write(work / "b.jsonl", [{**r, "img_size": 64, "data_spec": "dogs", "val_images": 30} for r in _rows()])
    proc = gate([base, bigger], work)
    assert proc.returncode == 2 and "img_size=32" in proc.stderr and "img_size=64" in proc.stderr, proc.stderr
    other = _write(work / "c.jsonl", [{**r, "img_size": 32, "data_spec": "dogs2", "val_images": 33} for r in _rows()])
    proc = gate([base, other], work)
    assert proc.returncode == 2 and "val_images=33" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    same = gate([base, base], work)
    assert same.returncode == 0 and "the same file, so every change is zero" in same.stdout
    assert f"machine: {FP['cpu_model']}" in same.stdout  # every timing shown names where it came from


def test_gate_sim_reports_false_alarms_and_power(tmp_path: Path, monkeypatch, capsys):
    from bench.gate.sim import main
    from data.errors import run_cli

    rows = _rows(seed=1, n=60, run_id="a") + _rows(seed=2, n=60, run_id="b") + _rows(seed=3, n=60, run_id="c")
    samples = _write(tmp_path / "results.jsonl", rows)
    with pytest.raises(SystemExit) as exc:
        run_cli(main, ["--samples", str(samples), "--trials", "60", "--n-grid", "5"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "within-run: worst A/A false-alarm rate 0.0%" in out and "MET" in out
    assert "across-runs" in out  # three recorded runs: process-to-process pairing simulated too
    lines = [ln for ln in out.splitlines() if ln.startswith("| fp32/latency")]
    assert any("| 5 " in ln.replace("|       5 ", "| 5 ") and "0.0%" in ln for ln in lines)  # n=5: blind
    with pytest.raises(SystemExit) as exc:
        run_cli(main, ["--samples", str(tmp_path / "none.jsonl")])
    assert exc.value.code == 2


def test_gate_sim_never_pools_runs_of_different_checkpoints(tmp_path: Path, monkeypatch, capsys):
    """Two models' runs pooled as two runs of one benchmark would simulate the models' difference as noise."""
    from bench.gate.sim import main
    from data.errors import run_cli

    runs = tmp_path / "results" / "runs"
    for i in range(3):
        _write(runs / f"small-{i}" / "results.jsonl", _rows(seed=i, run_id=f"s{i}"))
    _write(runs / "large" / "results.jsonl", _rows(factor=5.0, run_id="l", sha=OTHER_SHA))
    from bench.suite_report import EXECUTOR

    _write(runs / "pytest-bench" / "results.jsonl", [{**r, "executor": EXECUTOR} for r in _rows(run_id="p")])
    monkeypatch.setenv("OPTBENCH_RESULTS", str(tmp_path / "results"))
    with pytest.raises(SystemExit) as exc:
        run_cli(main, ["--trials", "20"])
    assert exc.value.code == 0
    captured = capsys.readouterr()
    assert f"simulating the 3 run(s) of checkpoint {SHA[:12]}" in captured.err and OTHER_SHA[:12] in captured.err
    simulated = next(ln for ln in captured.out.splitlines() if ln.startswith("samples: "))
    assert simulated.count("results.jsonl") == 3 and "large" not in simulated and "pytest-bench" not in simulated
    with pytest.raises(SystemExit) as exc:
        run_cli(
            main,
            ["--samples", str(runs / "small-0" / "results.jsonl"), "--samples", str(runs / "large" / "results.jsonl")],
        )
    assert exc.value.code == 2
    assert "runs of different checkpoints or conditions" in capsys.readouterr().err


def test_run_level_guard_absorbs_process_to_process_drift():
    """Pooled A/B rounds: a drift between processes is not a regression unless it stands out from the runs."""
    from bench.gate.series import Series
    from bench.gate.stats import compare_timing

    rng = np.random.default_rng(3)

    def side(run_levels, shift=1.0):
        runs = [rng.lognormal(np.log(10.0 * level * shift), 0.03, 100) for level in run_levels]
        return Series(
            "v",
            "latency",
            "cpu",
            "latency",
            samples_ms=np.concatenate(runs).tolist(),
            sessions=len(runs),
            chunks=[len(r) for r in runs],
        )

    # Same code, but one base process landed fast and one head process slow: pooled medians differ by ~10%.
    base, head = side([0.85, 0.95, 1.0]), side([1.0, 1.05, 1.25])
    drift = compare_timing(base, head, 0.05)
    assert drift.ratio > 1.05 and drift.p_value < 1e-6  # the sample-level test alone would fail the PR
    assert drift.verdict == "inconclusive" and drift.p_runs > 0.01 and "run-level p" in drift.note
    # A real 30% slowdown on top of mild process noise is caught at both levels.
    real = compare_timing(side([1.0, 1.02, 0.98]), side([1.01, 0.99, 1.0], shift=1.3), 0.05)
    assert real.verdict == "REGRESSION" and real.p_runs < 0.01


def _served_at(rows: list[dict], rate: float, bound_ms: float) -> list[dict]:
    """``rows`` plus a real ``serve`` row: the rate held at a p99 bound."""
    common = {k: v for k, v in rows[0].items() if k not in ("scenario", "batch_size", "samples_ms")}
    return rows + [{**common, "scenario": "serve", "serve_rate": rate, "serve_slo_ms": bound_ms}]


def test_serving_rates_at_different_bounds_are_refused_not_called_a_regression(work: Path, gate):
    """A run served at p99 <= 8 ms holds fewer requests than one at 50 ms because the question was stricter."""
    base = _write(work / "base.jsonl", _served_at(_rows(seed=1), 773.6, 50.0))
    strict = _write(work / "strict.jsonl", _served_at(_rows(seed=2), 514.2, 8.0))
    proc = gate([base, strict], work)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "REGRESSION" not in proc.stdout and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()
    assert len(line) == 1 and "serve_slo_ms=50" in line[0] and "serve_slo_ms=8" in line[0], proc.stderr
    same = _write(work / "same.jsonl", _served_at(_rows(seed=2), 514.2, 50.0))
    proc = gate([base, same], work)
    assert proc.returncode == 1 and _verdicts(proc.stdout)["fp32/serve"] == "REGRESSION", proc.stdout


@pytest.mark.parametrize("base_rate, cand_rate, verdict", [(0.0, 0.0, "unchanged"), (0.0, 40.0, "improved"),
                                                           (40.0, 0.0, "REGRESSION")])  # fmt: skip
def test_a_bound_nothing_held_compares_as_zero_requests(work: Path, gate, base_rate, cand_rate, verdict):
    """fp32 often holds no rate at a tight bound: 0 against 0 is no change, not an undefined ratio."""
    base = _write(work / "base.jsonl", _served_at(_rows(seed=1), base_rate, 15.0))
    cand = _write(work / "cand.jsonl", _served_at(_rows(seed=2), cand_rate, 15.0))
    proc = gate([base, cand], work)
    assert _verdicts(proc.stdout)["fp32/serve"] == verdict, proc.stdout
    assert proc.returncode == (1 if verdict == "REGRESSION" else 0), proc.stdout + proc.stderr


def test_ab_refuses_an_unknown_recipe_before_it_measures_anything(work: Path, gate):
    proc = gate(["--ab", "HEAD", "--recipes", "fp32,nosuch", "--out", "ab-out"], work)
    assert proc.returncode == 2 and "unknown recipe step 'nosuch'" in proc.stderr, proc.stdout + proc.stderr
    assert "interleaved rounds" not in proc.stderr and not (work / "ab-out").exists()
    proc = gate(["--ab", "HEAD", "--rounds", "6", "--out", "ab-out"], work)  # 2**-6 > 0.01: could never fail
    assert proc.returncode == 2 and "use at least 7" in proc.stderr and not (work / "ab-out").exists(), proc.stderr


def test_one_file_that_mixes_bounds_is_refused(work: Path, gate):
    """Pooling two serving rows of one benchmark at different bounds would average different questions."""
    rows = _served_at(_rows(seed=1), 80.0, 15.0)
    mixed = _write(work / "mixed.jsonl", rows + [{**rows[-1], "serve_rate": 300.0, "serve_slo_ms": 50.0}])
    cand = _write(work / "cand.jsonl", _served_at(_rows(seed=2), 80.0, 15.0))
    proc = gate([mixed, cand], work)
    assert proc.returncode == 2 and "serve_slo_ms=15" in proc.stderr and "serve_slo_ms=50" in proc.stderr, proc.stderr


def test_ab_in_a_repository_that_is_not_optbench_is_refused(tmp_path: Path, gate):
    """Both sides would run the installed optbench, the same code twice, and pass: nothing was compared."""
    repo = tmp_path / "mine"
    repo.mkdir()
    _git(["init", "-q"], repo)
    (repo / "train.py").write_text("print('my model')\n")
    _git(["add", "."], repo)
    _git(["commit", "-q", "-m", "mine"], repo)
    proc = gate(["--ab", "HEAD", "--recipes", "fp32", "--out", "ab-out"], repo)
    assert proc.returncode == 2 and "is not an optbench tree" in proc.stderr, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and not (repo / "ab-out").exists()
