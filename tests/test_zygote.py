"""Measurement processes forked from the warm forkserver are the processes a fresh interpreter would have been."""

from __future__ import annotations

import select
import subprocess
import textwrap

import pytest
from optbench_testing import tiny_config

from bench.run import zygote
from bench.run.local import LocalExecutor
from bench.run.sweep import run_sweep

REPORTING_STEP = textwrap.dedent(
    """
    import os
    from optim.registry import MODULE, register_step

    @register_step("report-step", accepts=[MODULE], produces=MODULE)
    def report_step(artifact, ctx):
        raise RuntimeError(f"mark={os.environ.get('OPTBENCH_MARK')}")
    """
)

pytestmark = pytest.mark.skipif(not zygote.forking_enabled(), reason="measurement processes are forked on Linux only")


def _ping(process) -> str:
    process.stdin.write('{"cmd": "ping"}\n')
    ready, _, _ = select.select([process.stdout], [], [], 120)
    assert ready, "no answer in 120 s"
    return process.stdout.readline()


def test_a_forked_server_answers_and_dies_like_a_process(tmp_path):
    process = zygote.spawn(tmp_path / "a.log", str(tmp_path), {"PATH": "/usr/bin:/bin"})
    assert isinstance(process, zygote.ForkedProcess)
    assert '"ok": true' in _ping(process)
    assert process.poll() is None
    process.kill()
    assert process.wait(10) == -9  # as Popen reports a SIGKILL, so the client's message names it
    assert process.stdout.readline() == ""  # the coordinator sees the end of its replies, not a hang
    silent = zygote.spawn(tmp_path / "b.log", str(tmp_path), {})
    with pytest.raises(subprocess.TimeoutExpired):
        silent.wait(0.1)
    silent.kill()


def test_forked_servers_take_the_environment_of_the_moment(tmp_path, tiny_ckpt, install_plugin, monkeypatch):
    """The forkserver started before this test set anything: the plug-in (found through PYTHONPATH and
    OPTBENCH_PLUGINS, both set afterwards) is imported, and a variable set afterwards is seen."""
    first = zygote.spawn(tmp_path / "warm.log", str(tmp_path), {})
    assert '"ok": true' in _ping(first)
    first.kill()
    monkeypatch.setenv("OPTBENCH_MARK", "set-after-the-forkserver-started")
    install_plugin("reporting_steps", REPORTING_STEP, ["report-step"])
    cfg = tiny_config(tiny_ckpt, ["report-step"], paired=False)
    rows = run_sweep(cfg, tmp_path / "run", LocalExecutor(), progress=False)
    failed = [r for r in rows if r["recipe"] == "report-step"]
    assert failed and failed[0]["status"] == "failed"
    assert "mark=set-after-the-forkserver-started" in failed[0]["error"]  # else: unknown recipe step


def test_subprocess_mode_starts_a_fresh_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTBENCH_SPAWN", "subprocess")
    assert not zygote.forking_enabled()
    process = zygote.spawn(tmp_path / "c.log", str(tmp_path), {"PATH": "/usr/bin:/bin"}, fresh_interpreter=False)
    try:
        assert isinstance(process, subprocess.Popen)
    finally:
        process.kill()
        process.wait(10)
