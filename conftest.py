"""Root conftest: the options of the benchmark suite (``pytest bench ...``) and its pytest-benchmark hooks.

The suite itself lives in ``bench/test_benchmarks.py``. Options are registered here because pytest only
reads ``pytest_addoption`` from the root (initial) conftest. Nothing heavy is imported at module level:
``pytest tests`` loads this file too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from optim.registry import REFERENCE

SUITE_SCHEMA = 1
# The suite's options that mean what the same options of `python -m bench` mean (bench.options reads them).
OPTION_FIELDS = (
    "ckpt",
    "model",
    "model_kwargs",
    "num_classes",
    "img_size",
    "data",
    "data_dir",
    "quick",
    "threads",
    "batch_size",
    "calib_size",
    "seed",
)
DEVICES = ("cpu", "cuda")
# Written into the JSON so nobody mistakes in-process numbers for the isolated ones of ``python -m bench``.
PROCESS_MODEL = (
    "pytest bench builds and times every variant inside the one pytest process (pytest-benchmark needs the "
    "timed call in-process). Each variant is built once, measured in every scenario, then released; "
    "torch._dynamo.reset(), gc and the CUDA cache are cleared before the next build so compiled graphs are "
    "not reused across variants. For one fresh process per variant use `python -m bench`."
)


@dataclass
class SuiteOptions:
    """The ``pytest bench`` options as typed (validated where cheap); :meth:`run_config` turns them into the one
    run configuration every command builds, on first use, so ``pytest tests`` never pays for torch."""

    ckpt: str | None = None
    model: str | None = None
    model_kwargs: str | None = None
    num_classes: int | None = None
    img_size: int | None = None
    data: str | None = None
    data_dir: str | None = None
    recipes: str | None = None
    devices: tuple[str, ...] = ("cpu",)
    quick: bool = False
    threads: int | None = None
    batch_size: int | None = None
    calib_size: int | None = None
    accuracy: bool = True
    seed: int = 0
    run_id: str = ""  # the run folder the report writers fill: results/runs/<run id>/
    skipped: list[dict[str, str]] = field(default_factory=list)  # recipes that cannot run here, with the reason
    matrix_recipes: list[str] = field(default_factory=list)  # every recipe the matrix parametrizes, in order
    failures: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (recipe, device): (error, code)
    suite_info: dict[str, Any] = field(default_factory=dict)  # checkpoint, data, ... filled by the session fixture
    _config: Any = None
    _namespace: Any = None
    _checked: Any = None  # (load spec, loaded model), loaded once for the session

    def resolved(self) -> SuiteOptions:
        """Fill the defaults that need torch (devices, threads) on first use, so `pytest tests` never pays for them."""
        if not self.devices:
            self.devices = _parse_devices(None)
        if self.threads is None:
            from models.machine import default_threads

            self.threads = default_threads()
        return self

    def loaded(self) -> Any:
        """The suite's checkpoint, loaded once (with the run configuration)."""
        self.run_config(self.devices[0] if self.devices else "cpu")
        return self._checked[1]

    def run_config(self, device: str) -> Any:
        """The run configuration of the suite on ``device``, made as every command makes one (the same checks:
        a bad ``--img-size``, ``--threads`` or data stops the suite with one line)."""
        import argparse

        from bench.options import run_config_from_args
        from bench.scenarios import configs_for

        if self._config is None:
            self.resolved()
            random_init = self.ckpt is None and self.model is not None
            names = {
                "device": self.devices[0],
                "random_init": random_init,
                "mean": None,
                "std": None,
                "skip_bad_images": False,
                "run_id": self.run_id,
            }
            fields = {f: getattr(self, f) for f in OPTION_FIELDS}
            self._namespace = argparse.Namespace(**fields, **names)
            from optim.options import check_build_options, load_checked

            check_build_options(self._namespace)
            self._checked = load_checked(self._namespace)
            config = run_config_from_args(self._namespace, recipes=(REFERENCE,), checked=self._checked)
            self._config = config.replace(accuracy=self.accuracy)
        if device == self._config.device:
            return self._config
        return self._config.replace(device=device, scenarios=configs_for(self._namespace, device))

    def report_config(self) -> Any:
        """The run configuration the JSON and the report record: the recipes the matrix benchmarks (not only the
        reference the session's configuration is built around)."""
        from bench.run.sweep import validate_recipes

        cfg = self.run_config(self.devices[0])
        chosen = validate_recipes(self.matrix_recipes) if self.matrix_recipes else list(cfg.recipes)
        summary = {"summary": f"pytest bench: {', '.join(chosen)}"}
        return cfg.replace(recipes=tuple(chosen), recipe_choice=summary, paired=False)  # timed alone, in-process


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("optbench", "optbench benchmark suite (pytest bench)")
    group.addoption("--ckpt", default=None, help="checkpoint to benchmark (default: the embedded digits model)")
    group.addoption("--model", default=None, help="timm name or pkg.module:callable; without --ckpt: random init")
    group.addoption("--model-kwargs", default=None, help="arguments of a --model factory: key=value,...")
    group.addoption("--num-classes", type=int, default=None, help="class count (random init, or a check)")
    group.addoption("--img-size", type=int, default=None, help="input resolution (default: the checkpoint's)")
    group.addoption("--data", default=None, help="digits | ImageFolder dir | torch/<name> (default: the checkpoint's)")
    group.addoption("--data-dir", default=None, help="root for timm dataset names")
    group.addoption("--recipes", default=None, help="comma-separated recipes or 'all' (default: all this machine runs)")
    group.addoption("--device", default=None, help="cpu, cuda or cpu,cuda (default: cpu, plus cuda when visible)")
    group.addoption("--quick", action="store_true", default=False, help="short warm-up and timing: a smoke run")
    group.addoption(
        "--threads", type=int, default=None, help="threads for every intra-op pool (default: CPUs available)"
    )
    group.addoption("--batch-size", type=int, default=None, help="throughput batch (default 16 on CPU, 128 on CUDA)")
    group.addoption("--calib-size", type=int, default=None, help="calibration images from the train split")
    group.addoption("--no-accuracy", action="store_true", default=False, help="skip the top-1 pass on the val split")
    group.addoption(
        "--run-id",
        default=None,
        help="run folder for the leaderboard and reports: results/runs/RUN_ID (default pytest-bench-<date-time>)",
    )


def _parse_devices(text: str | None) -> tuple[str, ...]:
    if text is None:
        import torch

        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    devices = tuple(dict.fromkeys(d.strip() for d in text.split(",") if d.strip()))
    for device in devices:
        if device not in DEVICES:
            raise pytest.UsageError(f"--device: unknown device {device!r}; choose from: {', '.join(DEVICES)}")
    if not devices:
        raise pytest.UsageError("--device: empty; choose from: cpu, cuda")
    return devices


def pytest_configure(config: pytest.Config) -> None:
    for name in ("num_classes", "img_size", "threads", "batch_size", "calib_size"):
        value = config.getoption(name)
        if value is not None and value <= 0:
            raise pytest.UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
    for name in ("ckpt", "model", "model_kwargs", "data", "data_dir", "recipes", "device", "run_id"):
        value = config.getoption(name)
        if isinstance(value, str) and not value.strip():  # `--ckpt ""` from an unset shell variable, say
            raise pytest.UsageError(f"--{name.replace('_', '-')} is empty")
    device_text = config.getoption("device")
    opts = SuiteOptions(
        ckpt=config.getoption("ckpt"),
        model=config.getoption("model"),
        model_kwargs=config.getoption("model_kwargs"),
        num_classes=config.getoption("num_classes"),
        img_size=config.getoption("img_size"),
        data=config.getoption("data"),
        data_dir=config.getoption("data_dir"),
        recipes=config.getoption("recipes"),
        # Parsed lazily for `pytest tests` runs (no torch import); validated now when given.
        devices=_parse_devices(device_text) if device_text is not None else (),
        quick=config.getoption("quick"),
        threads=config.getoption("threads"),
        batch_size=config.getoption("batch_size"),
        calib_size=config.getoption("calib_size"),
        accuracy=not config.getoption("no_accuracy"),
        run_id=_check_run_id(config.getoption("run_id")),
    )
    if opts.recipes is not None:
        _check_recipes(opts.recipes)
    config._optbench = opts  # read by bench/test_benchmarks.py (as pytest-benchmark keeps config._benchmarksession)


def _check_run_id(run_id: str | None) -> str:
    """A run folder that is a plain name and holds nothing yet (a report never overwrites another run's)."""
    if run_id is None:
        from bench.suite_report import default_run_id

        return default_run_id()
    from bench.run.run_dir import check_run_id, has_content, run_dir
    from data.errors import InputError

    try:
        if has_content(run_dir(check_run_id(run_id))):
            raise InputError(f"--run-id {run_id!r}: {run_dir(run_id)} already holds a run; choose another name")
    except InputError as exc:
        raise pytest.UsageError(str(exc)) from None
    return run_id


def _check_recipes(text: str) -> None:
    """Parse ``--recipes`` up front so a typo is one usage line, not a collection traceback."""
    from data.errors import InputError
    from optim.recipe import parse_list
    from optim.registry import default_recipes

    try:
        if not parse_list(text, default_recipes("cpu")) and text.strip() != "all":
            raise InputError("no recipes given")
    except InputError as exc:
        raise pytest.UsageError(f"--recipes: {exc}") from None


def suite_options(config: pytest.Config) -> SuiteOptions:
    """The suite's options with devices and threads resolved (imports torch on first use)."""
    return config._optbench.resolved()


def _is_suite_benchmark(bench: Any) -> bool:
    extra = getattr(bench, "extra_info", None) or {}
    return "variant" in extra and "scenario" in extra


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Add what pytest-benchmark's machine info lacks: CPU flags, GPU, driver, CUDA, library versions."""
    if getattr(config, "_optbench", None) is None:
        return
    from models.machine import fingerprint

    opts = suite_options(config)
    machine_info["optbench"] = fingerprint("cuda" if "cuda" in opts.devices else "cpu", opts.threads)


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]) -> None:
    """Keep raw samples (``stats.data``, which ``bench.gate`` needs) and add speedups and the suite's context."""
    ours = {b.fullname: b for b in benchmarks if _is_suite_benchmark(b)}
    if not ours:
        return
    entries = [e for e in output_json.get("benchmarks", []) if e.get("fullname") in ours]
    for entry in entries:
        stats = entry.get("stats")
        meta = ours[entry["fullname"]]
        if isinstance(stats, dict) and "data" not in stats and getattr(meta, "stats", None) is not None:
            stats["data"] = list(meta.stats.data)
    _add_speedups(entries)
    opts = suite_options(config)
    output_json["optbench"] = {
        "schema": SUITE_SCHEMA,
        **opts.suite_info,
        "devices": list(opts.devices),
        "threads": opts.threads,
        "quick": opts.quick,
        "process_model": PROCESS_MODEL,
        "units": "stats in seconds per call (one batch); extra_info *_ms in milliseconds per batch",
        "skipped": list(opts.skipped),
    }


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """After the suite: its rows through the report writers every run uses, and the answer on the console."""
    opts = getattr(config, "_optbench", None)
    session = getattr(config, "_benchmarksession", None)
    if opts is None or session is None or not opts.suite_info:  # `pytest tests`, or the suite never started
        return
    from bench.suite_report import write_suite_report

    written = write_suite_report(session.benchmarks, opts, opts.failures)
    if written is None:
        terminalreporter.write_line("optbench: nothing was timed, so no leaderboard was written")
        return
    terminalreporter.section("optbench leaderboard")
    terminalreporter.write_line(written.outputs.table)
    terminalreporter.write_line("")
    terminalreporter.write_line(written.outputs.answer)
    terminalreporter.write_line(f"reports: {written.run_dir}")


def _add_speedups(entries: list[dict[str, Any]]) -> None:
    """``speedup_vs_fp32`` (median time ratio) for each benchmark whose fp32 twin ran on the same device/scenario."""
    medians = {}
    for entry in entries:
        extra = entry.get("extra_info") or {}
        median = (entry.get("stats") or {}).get("median")
        if extra.get("variant") == REFERENCE and median:
            medians[(extra.get("device"), extra.get("scenario"))] = median
    for entry in entries:
        extra = entry.get("extra_info") or {}
        ref = medians.get((extra.get("device"), extra.get("scenario")))
        median = (entry.get("stats") or {}).get("median")
        if ref and median and not math.isnan(median):
            extra["speedup_vs_fp32"] = round(ref / median, 4)
