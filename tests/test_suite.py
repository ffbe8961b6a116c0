"""End to end through the commands users run: ``pytest bench`` and ``python -m bench`` (resume, random init)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_pytest_bench(args: list[str], tmp_path: Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``pytest bench`` as typed in the checkout, or ``pytest <checkout>/bench`` from any other folder ``cwd``."""
    suite = "bench" if cwd == REPO else str(REPO / "bench")
    cmd = [sys.executable, "-m", "pytest", suite, "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'bt'}"]
    env = {k: v for k, v in os.environ.items() if k != "OPTBENCH_RESULTS"}  # results/ in the folder it runs in
    return subprocess.run(cmd + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_pytest_bench_json_is_readable_by_compare_and_carries_accuracy(tiny_ckpt, tmp_path):
    user = tmp_path / "my-project"  # the user's own folder, outside the checkout, with relative paths
    user.mkdir()
    (user / "model.pt").write_bytes(tiny_ckpt.read_bytes())
    out = user / "out.json"
    proc = run_pytest_bench(
        [
            "--ckpt",
            "model.pt",
            "--recipes",
            "fp32,fp32-cl,fp16",
            "--device",
            "cpu",
            "--quick",
            "--run-id",
            "suite",
            "--benchmark-json",
            "out.json",
        ],
        tmp_path,
        cwd=user,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 passed, 2 skipped" in proc.stdout  # fp16 is CUDA-only: skipped with the reason, not failed
    # The same report writers as `python -m bench`, in the user's results/runs/<run id>/.
    run = user / "results" / "runs" / "suite"
    for name in ("results.jsonl", "leaderboard.md", "leaderboard.csv", "leaderboard.html", "explanations.md"):
        assert (run / name).is_file(), name
    rows = read_rows(run / "results.jsonl")
    ok = {(r["variant"], r["scenario"]) for r in rows if r["status"] == "ok"}
    assert ok == {("fp32", "latency"), ("fp32", "throughput"), ("fp32-cl", "latency"), ("fp32-cl", "throughput")}
    assert [r["reason"] for r in rows if r["status"] == "skipped"] == ["step fp16 runs only on cuda"]
    assert all(r["top1"] > 50 and r["checkpoint_sha256"] for r in rows if r["status"] == "ok")
    assert "fastest within 1-point top-1 budget on cpu:" in proc.stdout and "speedups unpaired" in proc.stdout
    assert "not interleaved with fp32" in (run / "explanations.md").read_text()
    board = (run / "leaderboard.md").read_text()
    assert "fp32-cl" in board and "skipped: step fp16 runs only on cuda" in board
    assert "\nMeasured on " in board and " threads." in board  # every figure names the machine it came from
    again = run_pytest_bench(["--ckpt", "model.pt", "--run-id", "suite", "--collect-only"], tmp_path, cwd=user)
    assert again.returncode == 4 and "already holds a run" in again.stderr  # a report never overwrites a run
    doc = json.loads(out.read_text())
    benches = {b["extra_info"]["variant"] + "/" + b["extra_info"]["scenario"]: b for b in doc["benchmarks"]}
    assert set(benches) == {"fp32/latency", "fp32/throughput", "fp32-cl/latency", "fp32-cl/throughput"}
    for bench in doc["benchmarks"]:
        extra, stats = bench["extra_info"], bench["stats"]
        assert extra["device"] == "cpu" and extra["top1"] > 50 and 0 <= extra["agreement"] <= 100
        assert extra["warmup_rounds"] >= 1 and extra["p50_ms"] > 0 and extra["size_mb"] > 0
        assert extra["manifest"]["steps"][0]["step"] == extra["variant"]
        assert len(stats["data"]) == stats["rounds"]  # raw samples for bench.gate, without --benchmark-save-data
        for key in ("ops", "stddev", "mean", "rounds"):  # what github-action-benchmark's pytest input reads
            assert isinstance(stats[key], int | float)
        assert bench["fullname"].startswith("bench/test_benchmarks.py::test_variant[")
    assert benches["fp32/latency"]["extra_info"]["batch_size"] == 1
    assert benches["fp32/throughput"]["extra_info"]["batch_size"] == 16
    assert benches["fp32/latency"]["extra_info"]["speedup_vs_fp32"] == 1.0
    for bench in doc["benchmarks"]:  # one statistic, named: images per second at the median time per batch
        extra = bench["extra_info"]
        assert "throughput_img_s" not in extra
        batch_s = bench["stats"]["median"]
        assert extra["images_per_second_median"] == pytest.approx(extra["batch_size"] / batch_s, rel=1e-3)
    fingerprint = doc["machine_info"]["optbench"]
    assert fingerprint["threads"] >= 1 and "versions" in fingerprint and "cpu_flags" in fingerprint
    assert doc["optbench"]["skipped"] == [{"recipe": "fp16", "device": "cpu", "reason": "step fp16 runs only on cuda"}]
    assert "one pytest process" in doc["optbench"]["process_model"]
    assert doc["optbench"]["run_config"]["recipes"] == ["fp32", "fp32-cl", "fp16"]  # what the matrix ran, not fp32

    from pytest_benchmark.cli import main as compare_main

    compare = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pytest_benchmark.cli import main; sys.exit(main())",
            "compare",
            str(out),
            f"--histogram={tmp_path / 'hist'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert compare_main is not None and compare.returncode == 0, compare.stderr[-2000:]
    assert "test_variant[cpu-fp32-cl-latency]" in compare.stdout
    assert list(tmp_path.glob("hist*.svg"))  # pygal is installed: --histogram works


def test_pytest_bench_report_shows_a_variant_that_failed_to_build(tiny_ckpt, tmp_path, install_plugin):
    from tests.test_user_checkpoints import FAILING_STEPS

    install_plugin("failing_steps", FAILING_STEPS, ["raise-step"])
    args = ["--ckpt", str(tiny_ckpt), "--recipes", "fp32,raise-step", "--quick", "--no-accuracy", "--run-id", "f"]
    proc = run_pytest_bench(args, tmp_path, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 failed, 2 passed" in proc.stdout
    rows = read_rows(tmp_path / "results" / "runs" / "f" / "results.jsonl")
    failed = [r for r in rows if r["status"] == "failed"]
    assert [(r["recipe"], r["reason_code"]) for r in failed] == [("raise-step", "error")]
    assert "boom: unsupported op" in failed[0]["error"]
    assert "raise-step" in (tmp_path / "results" / "runs" / "f" / "leaderboard.md").read_text()


def test_pytest_bench_bad_option_is_a_usage_error(tmp_path):
    proc = run_pytest_bench(["--device", "tpu"], tmp_path)
    assert proc.returncode == 4
    assert "--device: unknown device 'tpu'; choose from: cpu, cuda" in proc.stderr
    proc = run_pytest_bench(["--recipes", "fp32,nope", "--collect-only"], tmp_path)
    assert proc.returncode == 4
    assert "--recipes: unknown recipe step 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_pytest_bench(["--ckpt", "", "--collect-only"], tmp_path)  # an unset shell variable
    assert proc.returncode == 4 and "ERROR: --ckpt is empty" in proc.stderr, proc.stderr


def read_rows(path: Path) -> list[dict]:
    """Rows as the sweep reads them (a torn line from a kill is skipped, never glued to the next row)."""
    from bench.results_io import read_rows as read

    return read(path)


def test_interleaved_sweep_writes_paired_speedups_and_resumes_without_duplicates(cli, tiny_ckpt, tmp_path):
    args = ["bench", str(tiny_ckpt), "--recipes", "fp32,fp32-cl,fp16", "--quick", "--run-id", "r1", "--no-progress"]
    first = cli([*args, "--rounds", "6", "--replicas", "2"])  # --quick alone would use one process a side
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "results" / "runs" / "r1"
    results = run_dir / "results.jsonl"
    rows = read_rows(results)
    assert sorted((r["variant"], r["scenario"]) for r in rows) == [
        ("fp16", "*"),  # fp16 needs CUDA: a skipped row with the reason
        ("fp32", "latency"),
        ("fp32", "throughput"),
        ("fp32-cl", "latency"),
        ("fp32-cl", "throughput"),
    ]
    by = {(r["variant"], r["scenario"]): r for r in rows}
    assert by[("fp16", "*")]["status"] == "skipped" and "cuda" in by[("fp16", "*")]["reason"]
    cl, ref = by[("fp32-cl", "latency")], by[("fp32", "latency")]
    assert cl["paired"]["reference"] == "fp32" and cl["paired"]["rounds"] == 6 and cl["paired"]["time_ratio"] > 0
    assert ref["top1"] > 80 and sum(ref["slice_lengths"]) == len(ref["samples_ms"]) == ref["n"]
    from bench.report.leaderboard import build_leaderboard

    board = build_leaderboard(rows).set_index("variant")
    assert board.loc["fp32-cl", "speedup_vs_fp32"] == pytest.approx(1 / cl["paired"]["time_ratio"])
    low, high = board.loc["fp32-cl", "speedup_ci95_low"], board.loc["fp32-cl", "speedup_ci95_high"]
    assert 0 < low <= board.loc["fp32-cl", "speedup_vs_fp32"] <= high and board.loc["fp32", "speedup_vs_fp32"] == 1.0
    # Two timed processes a side, both loaded what a third built and saved; the builder only reported.
    assert cl["pairing"]["reference_processes"] == 2 and cl["pairing"]["reference_builder_timed"] is False
    assert cl["top1"] > 80 and cl["agreement"] > 90 and cl["build_s"] is not None  # the builder's fields
    assert all((run_dir / "logs" / f"fp32-cl{s}.log").is_file() for s in ("", "-2", "-3"))
    assert len(cl["paired"]["process_time_ratios"]) == 2 and all(r > 0 for r in cl["paired"]["process_time_ratios"])
    assert sum(cl["process_samples"]) == cl["n"] == len(cl["samples_ms"]) and len(ref["process_samples"]) == 2
    assert (run_dir / "variants" / "fp32-cl" / "cpu" / "manifest.json").is_file()
    # The gate reads the interleaved rows: samples, slices and the session survive the round trip.
    from bench.gate.inputs import load_file

    series = load_file(results).series[("fp32-cl", "latency", "cpu")]
    assert series.pairing == "r1/fp32-cl" and series.rounds() is not None and len(series.rounds()) == 6
    assert json.loads(results.read_text().splitlines()[-1])["recipe"] == "fp32"  # the reference is written last
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.html", "explanations.md", "pareto.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "pareto.png").read_bytes().startswith(b"\x89PNG")
    assert "fastest within 1-point top-1 budget on cpu:" in first.stdout
    cl = [r for r in rows if r["variant"] == "fp32-cl"]
    assert all(r["pairing"]["rounds"] == 6 and len(r["slice_lengths"]) == 6 for r in cl)
    assert all(r["pairing"]["processes"] == 2 and len(r["process_samples"]) == 2 for r in cl)  # --replicas 2
    assert all(r["pairing"]["builder_timed"] is False for r in cl)  # both loaded what a third process built
    if len(os.sched_getaffinity(0)) >= 2:  # as many threads as CPUs, two or more: the timed processes pinned them
        pins = [r["thread_pinning"] for r in rows if r["status"] == "ok"]
        assert len(pins) == 4 and all(p.startswith("calling thread on CPU") for p in pins), pins

    # Simulate a kill while fp32-cl was being written: its rows gone, a torn half line left behind.
    kept = [json.dumps(r) for r in rows if r["variant"] == "fp32"]
    results.write_text("\n".join(kept) + "\n" + json.dumps(rows[-1])[:40])
    fp32_stamps = sorted(r["timestamp"] for r in rows if r["variant"] == "fp32")

    resumed = cli(["bench", "--resume", "r1", "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = read_rows(results)
    keys = [(r["variant"], r["scenario"]) for r in rows]
    assert len(keys) == len(set(keys)) == 5
    assert sorted(r["timestamp"] for r in rows if r["variant"] == "fp32") == fp32_stamps  # not measured again
    assert "fp32-cl" in (run_dir / "leaderboard.csv").read_text()
    resumed_cl = [r for r in rows if r["variant"] == "fp32-cl"]
    assert all(r["pairing"]["rounds"] == 6 and r["pairing"]["processes"] == 2 for r in resumed_cl)  # kept on resume


@pytest.mark.slow
def test_random_init_any_arch_speed_only_with_wandb(cli, tmp_path):
    proc = cli(
        [
            "bench",
            "--model",
            "resnet10t",
            "--num-classes",
            "120",
            "--random-init",
            "--img-size",
            "32",
            "--recipes",
            "fp32",
            "--quick",
            "--run-id",
            "ri",
            "--no-progress",
            "--wandb",
        ],
        env={"WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "results" / "runs" / "ri"
    rows = read_rows(run_dir / "results.jsonl")
    assert {r["status"] for r in rows} == {"ok"} and rows[0]["num_classes"] == 120
    assert all("top1" not in r for r in rows)
    import pandas as pd

    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert board["top1"].isna().all()
    assert board["note"].str.contains("random init: speed only, accuracy not measured").all()
    assert "speed only" in proc.stdout and "wandb sync" in proc.stderr
    assert list((run_dir / "wandb").glob("offline-run-*/files/media/table/leaderboard_*.table.json"))
