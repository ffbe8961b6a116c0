"""Shared fixtures: tiny timm models on digits at small resolution, everything under tmp_path."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
import torch

TINY_ARCH = "resnet10t"
TINY_IMG = 32


def pytest_configure(config):
    """Parallel workers (make test) each get their share of the CPUs for torch, OpenMP and MKL, and so do the commands
    their tests start: two workers with two threads each on 2 vCPUs made every spinning OpenMP pool wait for the
    other's (one epoch of training took 94 s beside another worker, 23 s alone). Measurement processes still set
    their own thread counts (--threads, or the CPUs available)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        share = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path, monkeypatch):
    """Runs write under tmp_path, never into the working tree; W&B stays off unless a test turns it on."""
    monkeypatch.setenv("OPTBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("WANDB_MODE", "disabled")  # W&B tests opt in with WANDB_MODE=offline themselves
    monkeypatch.setenv("WANDB_SILENT", "true")
    # Test files run in parallel (make test): each test's sweeps take their own machine-wide measurement lock, so
    # one test's sweep is not warned about another's.
    monkeypatch.setenv("OPTBENCH_MACHINE_LOCK", str(tmp_path / "machine.lock"))
    # An xdist worker exports its id; a `pytest bench` started by a test would inherit it, and pytest-benchmark then
    # disables itself (no JSON written) as if that inner run were an xdist worker too.
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _restore_cpus_and_threads():
    """A test that runs a job in this process (bench.run.process.set_threads) would leave pytest confined to that job's
    CPUs and thread count, and every later test, and every process it starts, on one CPU: undo it after each test."""
    from bench.measure.threads import threads_restored

    with threads_restored():
        yield


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """resnet10t trained for 2 epochs on digits at 32 px (about 15 s on 2 cores): real weights, real top-1.

    Trained once per test run: parallel workers (make test) share the file instead of each training its own.
    """
    from models.train import TrainConfig, train_checkpoint

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if base.name.startswith("popen-gw") else base  # xdist: every worker's folder sits in one
    path = shared / "tiny-ckpt" / "tiny.pt"
    path.parent.mkdir(exist_ok=True)
    with open(path.parent / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker trains; the others wait for its file
        if not path.is_file():
            partial = path.with_name("tiny.partial.pt")
            config = TrainConfig(epochs=2, seed=0, progress=False)
            train_checkpoint(TINY_ARCH, "digits", str(partial), config, img_size=TINY_IMG)
            partial.replace(path)
    return path


@pytest.fixture(scope="session")
def tiny_loaded(tiny_ckpt):
    import models

    return models.load(tiny_ckpt)


@pytest.fixture
def cli():
    from optbench_testing import run_module

    return run_module


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """``install_plugin(module_name, source, steps)``: a producer plug-in every command and spawned worker imports.

    The steps it registers are removed afterwards, and so is the imported module, so other tests see the registry as
    it was and a later test installing the same module imports (and registers) it again.
    """
    import sys

    import optim.registry as registry

    folder = tmp_path / "plugins"
    added: list[str] = []
    modules: list[str] = []

    def install(module: str, source: str, steps: list[str]) -> None:
        folder.mkdir(exist_ok=True)
        (folder / f"{module}.py").write_text(source)
        monkeypatch.syspath_prepend(str(folder))
        monkeypatch.setenv("PYTHONPATH", str(folder))
        monkeypatch.setenv("OPTBENCH_PLUGINS", module)
        monkeypatch.setattr(registry, "_loaded", False)
        added.extend(steps)
        modules.append(module)

    yield install
    for step in added:
        registry.STEPS.pop(step, None)
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture
def run_in_process(capsys):
    """``run_in_process(main, args)``: a command's ``main`` through ``run_cli``, as its ``python -m`` runs it, but
    in this process (milliseconds instead of seconds for bad-input checks); returns (exit code, stdout, stderr)."""
    from data.errors import run_cli

    def run(main, args):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(main, [str(a) for a in args])
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err

    return run


@pytest.fixture
def cli_here(run_in_process, monkeypatch):
    """``cli_here([module, *args], cwd=None)``: what ``cli`` returns (a CompletedProcess) for a command whose answer
    comes before it measures anything (bad input, listings), run by the command's own ``main`` in this process: the
    same ``run_cli`` path as ``python -m module``, without the seconds an interpreter takes to import torch."""
    import importlib
    import subprocess

    def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
        module = importlib.import_module(argv[0])
        if not hasattr(module, "main"):  # a package: python -m runs its __main__
            module = importlib.import_module(f"{argv[0]}.__main__")
        if cwd is not None:
            monkeypatch.chdir(cwd)
        code, out, err = run_in_process(module.main, argv[1:])
        return subprocess.CompletedProcess(argv, code, out, err)

    return run
