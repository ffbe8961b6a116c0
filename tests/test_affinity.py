"""Thread pinning of a measurement process (bench.measure.threads): where each thread of a real pool ends up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bench.measure.threads import pin_threads

# A fresh interpreter: real torch (OpenMP) and ONNX Runtime pools of two threads, pinned, then every thread's CPUs.
CHILD = textwrap.dedent(
    """
    import json, os, threading
    import numpy as np, onnx, onnxruntime as ort, torch
    from onnx import TensorProto, helper

    torch.set_num_threads(2)
    conv = torch.nn.Conv2d(32, 32, 3)
    with torch.inference_mode():
        for _ in range(5):
            conv(torch.randn(1, 32, 64, 64))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [256, 256])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [256, 256])],
        [helper.make_tensor("b", TensorProto.FLOAT, [256, 256], np.ones(256 * 256, np.float32))],
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(helper.make_model(graph).SerializeToString(), options)
    session.run(None, {"a": np.ones((256, 256), np.float32)})
    from bench.measure.threads import pin_threads
    how = pin_threads(2)
    tasks = {t: sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
    print(json.dumps({"how": how, "me": threading.get_native_id(), "tasks": tasks}))
    """
)


def test_the_calling_thread_and_the_pools_get_cpus_of_their_own():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip(f"needs 2 CPUs to pin two threads apart; this process may use {len(cpus)}")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    env.pop("OPTBENCH_PIN_THREADS", None)
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    tasks = {int(t): c for t, c in out["tasks"].items()}
    assert tasks.pop(out["me"]) == [cpus[0]]
    assert len(tasks) >= 2  # at least torch's OpenMP worker and ORT's pool thread besides the caller
    assert all(c == [cpus[1]] for c in tasks.values()), tasks
    assert out["how"] == f"calling thread on CPU {cpus[0]}, {len(tasks)} other threads on CPU {cpus[1]}"


def test_nothing_is_pinned_when_disabled_or_when_threads_must_share(monkeypatch):
    before = os.sched_getaffinity(0)
    assert pin_threads(1) is None  # one thread: set_threads already confines it
    assert pin_threads(len(before) + 1) is None  # more threads than CPUs: pinning cannot keep them apart
    monkeypatch.setenv("OPTBENCH_PIN_THREADS", "0")
    assert pin_threads(2) is None
    assert os.sched_getaffinity(0) == before  # this (pytest) process was left alone
