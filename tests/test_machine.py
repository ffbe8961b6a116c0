"""What the machine fingerprint says about the CPUs a run may use."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin two threads apart")
@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux) to give the process two CPUs")
def test_a_measurement_process_pinned_thread_by_thread_still_counts_all_its_cpus():
    """The measurement process pins its calling thread to one CPU and its pool to the others: the fingerprint's
    cpu_available must still say how many CPUs the run had, not 1 beside threads = 2."""
    code = (
        "import os, threading\n"
        "from models.machine import cpu_info\n"
        "cpus = sorted(os.sched_getaffinity(0))[:2]\n"
        "ready, done = threading.Event(), threading.Event()\n"
        "def pool():\n"
        "    os.sched_setaffinity(0, {cpus[1]}); ready.set(); done.wait()\n"
        "t = threading.Thread(target=pool); t.start(); ready.wait()\n"
        "os.sched_setaffinity(0, {cpus[0]})\n"
        "print(cpu_info()['cpu_available']); done.set(); t.join()\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["taskset", "-c", ",".join(map(str, sorted(os.sched_getaffinity(0))[:2])), sys.executable,
                           "-c", code], capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "2"
