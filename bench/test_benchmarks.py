"""The pytest-benchmark suite: ``pytest bench --benchmark-json out.json [--ckpt ...] [--recipes ...] [--quick]``.

One test per recipe x timed scenario x device (by default latency at batch 1, throughput at batch N). Each variant is
built once per pytest run (:class:`VariantCache`), its accuracy measured once, then timed with
``benchmark.pedantic`` using explicit warm-up rounds (pytest-benchmark's own warm-up is off by default on
CPython, so lazy compilation would leak into the statistics) and a call that synchronizes CUDA before the
timer stops. ``benchmark.extra_info`` carries what the leaderboard and ``bench.gate`` need; the root
``conftest.py`` adds the machine fingerprint and keeps the raw samples in the JSON.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.suite import Suite, VariantCache, release_device_memory, rounds_for, timed_call


def suite_options(config: pytest.Config):
    """The options the root conftest parsed (devices and threads resolved)."""
    return config._optbench.resolved()


def timed_scenarios() -> list[str]:
    """The default scenarios that time a fixed call (pytest-benchmark times calls; an open-loop load is not one)."""
    from bench.scenarios import all_scenarios
    from bench.scenarios.batch import BatchScenario

    return [s.name for s in all_scenarios() if s.default and isinstance(s, BatchScenario)]


def _plain(value: Any) -> Any:
    """JSON-safe copy (paths, dtypes and the like become strings)."""
    return json.loads(json.dumps(value, default=str))


def _matrix(config: pytest.Config) -> list[Any]:
    """(device, recipe, scenario) parameters; recipes this machine cannot run are skipped with the reason."""
    from bench.run.sweep import validate_recipes
    from data.errors import InputError
    from optim.recipe import parse, parse_list
    from optim.registry import default_recipes

    opts = suite_options(config)
    params = []
    for device in opts.devices:
        try:
            if opts.recipes:
                recipes = list(dict.fromkeys(str(r) for r in parse_list(opts.recipes, default_recipes(device))))
            else:
                recipes = validate_recipes(default_recipes(device))
        except InputError as exc:
            raise pytest.UsageError(f"--recipes: {exc}") from None
        if not recipes:
            raise pytest.UsageError("--recipes: no recipes to run")
        opts.matrix_recipes += [r for r in recipes if r not in opts.matrix_recipes]
        for recipe in recipes:
            reason = parse(recipe).unavailable_reason(device)
            if device == "cuda" and reason is None:
                import torch

                if not torch.cuda.is_available():
                    reason = "no CUDA device is visible"
            if reason:
                opts.skipped.append({"recipe": recipe, "device": device, "reason": reason})
            for scenario in timed_scenarios():
                marks = [pytest.mark.skip(reason=f"{recipe} on {device}: {reason}")] if reason else []
                params.append(pytest.param(device, recipe, scenario, id=f"{device}-{recipe}-{scenario}", marks=marks))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"device", "recipe", "scenario"} <= set(metafunc.fixturenames):
        metafunc.parametrize(("device", "recipe", "scenario"), _matrix(metafunc.config))


@pytest.fixture(scope="session")
def suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Load the model once, fix the thread count for the session (restored after), describe the run."""

    from bench.measure.threads import set_threads, threads_restored
    from data.errors import InputError

    opts = suite_options(request.config)
    try:
        cfg = opts.run_config(opts.devices[0])
        loaded = opts.loaded()
    except InputError as exc:
        pytest.exit(f"error: {exc}", returncode=2)
    info = loaded.info
    data_spec = cfg.data_spec
    with threads_restored():  # the suite sets the threads for the session; undone (CPUs included) at its end
        set_threads(opts.threads)
        opts.suite_info = {
            "checkpoint": info.source,
            "checkpoint_sha256": info.sha256,
            "model": info.arch,
            "num_classes": info.num_classes,
            "img_size": info.input_size[1],
            "data_spec": data_spec,
            "accuracy": opts.accuracy and info.has_weights,
            "run_config": opts.report_config().to_dict(),
        }
        yield Suite(loaded=loaded, options=opts, data_spec=data_spec, workdir=tmp_path_factory.mktemp("variants"))


@pytest.fixture(scope="session")
def variants(suite: Suite) -> VariantCache:
    cache = VariantCache(suite)
    suite.options.failures = cache.failed  # the report's failed rows
    yield cache
    cache.current = None
    release_device_memory()


def test_variant(benchmark, variants: VariantCache, suite: Suite, device: str, recipe: str, scenario: str) -> None:
    """Time one variant in one scenario; accuracy and build facts ride along in ``extra_info``."""
    import torch

    from bench.scenarios.batch import host_batch
    from models.timers import CudaEventTimer, run_timed, summarize

    built = variants.get(recipe, device)
    if built.error:
        pytest.fail(f"{recipe} on {device} failed to build earlier in this session: {built.error}", pytrace=False)
    variant = built.variant
    cfg = suite.scenario(scenario, device)
    host = host_batch(suite.loaded.info.input_size, cfg.batch_size, suite.options.seed, device)
    call = timed_call(variant, host, device)
    warmup_rounds, rounds = rounds_for(call, cfg)

    benchmark.group = f"{device} {scenario} b{cfg.batch_size}"
    benchmark.extra_info.update(
        variant=variant.name,
        recipe=recipe,
        scenario=scenario,
        device=device,
        batch_size=cfg.batch_size,
        threads=suite.options.threads,
        quick=suite.options.quick,
        warmup_rounds=warmup_rounds,
        timer="perf_counter; the call ends with torch.cuda.synchronize()" if device == "cuda" else "perf_counter",
        **_plain(built.info),
    )
    benchmark.pedantic(call, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)

    if benchmark.stats is not None:  # None under --benchmark-disable: the call ran once, untimed
        stats = summarize(list(benchmark.stats.stats.data), cfg.batch_size)
        stats.pop("throughput_img_s")  # from the mean: the suite's figures are medians, so is its images per second
        benchmark.extra_info.update({k: round(v, 6) for k, v in stats.items() if k != "n"})
        benchmark.extra_info["images_per_second_median"] = round(cfg.batch_size / benchmark.stats.stats.median, 3)
    if device == "cuda":
        ready = variant.prepare_input(host)
        device_only = run_timed(lambda: variant.predict(ready), cfg, CudaEventTimer())
        stats = summarize(device_only, cfg.batch_size)
        benchmark.extra_info.update({f"device_{k}": round(v, 6) for k, v in stats.items() if k in ("p50_ms", "p99_ms")})
    benchmark.extra_info["manifest"] = _plain(
        {k: variant.manifest.get(k) for k in ("steps", "artifact_kind", "versions", "notes", "artifacts", "size_mb")}
    )
    out = call()
    assert torch.isfinite(out.float()).all(), f"{recipe} on {device} returned non-finite logits"
