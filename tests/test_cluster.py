"""Sweeps on a real two-node Ray cluster on this machine (loopback only), through the command a user types."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# Ray reads this when it is imported: every node then binds to 127.0.0.1, never to the machine's interface address.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray", dir="/tmp")}
os.environ.update(LOOPBACK_ENV)
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[cluster]')")

RECIPES = "fp32,fp32-cl,dynamic"  # cheap to build: the cluster, not the producers, is under test
SHORT = ("--rounds", "5", "--replicas", "1", "--threads", "1")  # plumbing, not numbers


@pytest.fixture(scope="module")
def cluster():
    """Head and one worker node, each with one measurement slot and one CPU, dashboards off, on 127.0.0.1."""
    from ray.cluster_utils import Cluster

    env = dict(LOOPBACK_ENV)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"optbench_slot": 1}, "include_dashboard": False},
    )
    worker = cluster.add_node(num_cpus=1, resources={"optbench_slot": 1, "second": 1})
    ray.init(address=cluster.address)
    try:
        yield cluster, worker, env
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_no_cluster_is_one_line_and_leaves_no_run_directory(tiny_ckpt, tmp_path):
    """Refused before anything is written, so the same --run-id works once a cluster is up."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-none", dir="/tmp")  # no cluster has ever run here
    (tmp_path / "model.pt").write_bytes(Path(tiny_ckpt).read_bytes())
    cmd = [sys.executable, "-m", "bench", "model.pt", "--recipes", "fp32", "--executor", "ray", "--run-id", "r1",
           "--results", "out", "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: cannot reach a Ray cluster") and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "runs" / "r1").exists()


def test_an_address_that_never_answers_gives_up_with_one_line(tiny_ckpt, tmp_path):
    """Ray retries such an address without end; the command stops at its connect timeout, writing nothing."""
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray-none", dir="/tmp")}
    env["OPTBENCH_RAY_CONNECT_TIMEOUT_S"] = "6"
    (tmp_path / "model.pt").write_bytes(Path(tiny_ckpt).read_bytes())
    cmd = [sys.executable, "-m", "bench", "model.pt", "--recipes", "fp32", "--executor", "ray", "--ray-address",
           "192.0.2.2:6399", "--run-id", "r2", "--results", "out", "--no-progress"]  # fmt: skip  # TEST-NET: no host
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: the Ray cluster at 192.0.2.2:6399 did not answer within 6 s" in proc.stderr
    assert not (tmp_path / "out" / "runs" / "r2").exists()


def _sweep(cluster, env, tmp_path, ckpt, run_id, *extra, wait=True):
    cmd = [
        sys.executable,
        "-m",
        "bench",
        str(ckpt),
        "--executor",
        "ray",
        "--ray-address",
        cluster.address,
        "--quick",
        "--run-id",
        run_id,
        "--no-progress",
        *SHORT,
        *extra,
    ]
    full_env = {**os.environ, **env, "OPTBENCH_RESULTS": str(tmp_path / "results")}
    if not wait:
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=900)


def _rows(tmp_path, run_id):
    path = tmp_path / "results" / "runs" / run_id / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_nodes_talk_over_loopback_only(cluster):
    addresses = {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}
    assert addresses == {"127.0.0.1"} and len([n for n in ray.nodes() if n["Alive"]]) == 2


def test_a_sweep_spreads_over_nodes_one_measurement_per_node(cluster, tiny_ckpt, tmp_path):
    from bench.report.leaderboard import columns

    nodes, _, env = cluster
    proc = _sweep(nodes, env, tmp_path, tiny_ckpt, "ray4", "--recipes", RECIPES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(tmp_path, "ray4")
    assert {r["recipe"] for r in rows if r["status"] == "ok"} == set(RECIPES.split(","))
    assert all(r["executor"] == "ray" and r["node"]["address"] == "127.0.0.1" for r in rows if r["status"] == "ok")
    variants = [r for r in rows if r["recipe"] != "fp32" and r["scenario"] == "latency"]
    assert all(r["paired"]["rounds"] >= 5 for r in variants)  # paired with an fp32 reference on its own node
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for r in variants:
        spans.setdefault(r["node"]["id"], []).append((r["measured_from"], r["measured_to"], r["recipe"]))
    for node, intervals in spans.items():
        intervals.sort()
        for (_, end, a), (start, _, b) in zip(intervals, intervals[1:], strict=False):
            assert start >= end, f"{a} and {b} overlapped on node {node}"
    fp32_nodes = {r["node"]["id"] for r in rows if r["recipe"] == "fp32"}
    assert fp32_nodes == set(spans)  # every node that measured variants measured fp32 too
    header = (tmp_path / "results" / "runs" / "ray4" / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert header[: len(columns())] == columns()  # the same schema as a local sweep


def test_a_grid_with_a_target_writes_a_run_directory_per_checkpoint_on_its_nodes(cluster, tiny_ckpt, tmp_path):
    nodes, worker, env = cluster
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'recipes = "fp32"\nquick = true\nthreads = 1\nreplicas = 1\ntargets = ["second"]\n'
        f'[[checkpoint]]\npath = "{tiny_ckpt}"\nname = "a"\n'
        f'[[checkpoint]]\npath = "{tiny_ckpt}"\nname = "b"\n'
    )
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--sweep-file",
        str(grid),
        "--executor",
        "ray",
        "--ray-address",
        nodes.address,
        "--no-progress",
    ]
    proc = subprocess.run(
        cmd,
        env={**os.environ, **env, "OPTBENCH_RESULTS": str(tmp_path / "results")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("grid-a", "grid-b"):
        rows = _rows(tmp_path, name)
        assert {r["status"] for r in rows} == {"ok"}
        assert {r["node"]["id"] for r in rows} == {worker.node_id}  # only the node declaring "second"


def test_a_node_that_dies_mid_sweep_leaves_a_retried_or_failed_row(cluster, tiny_ckpt, tmp_path):
    """Runs last: it removes the worker node."""
    nodes, worker, env = cluster
    proc = _sweep(nodes, env, tmp_path, tiny_ckpt, "kill", "--recipes", RECIPES, wait=False)
    logs = tmp_path / "results" / "runs" / "kill" / "logs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(logs.glob("*.log"))) < 3:
        time.sleep(0.5)
    time.sleep(3)  # both nodes are measuring now
    nodes.remove_node(worker, allow_graceful=False)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode in (0, 1), err[-3000:]
    rows = _rows(tmp_path, "kill")
    touched = [r for r in rows if "retried on another node" in str(r.get("note")) or r["status"] == "failed"]
    assert touched, err[-3000:]
    assert (tmp_path / "results" / "runs" / "kill" / "leaderboard.csv").is_file()  # the sweep finished
    assert Path(tmp_path / "results" / "runs" / "kill" / "results.jsonl").read_text().count("\n") >= len(rows)
