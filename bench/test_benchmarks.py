"""The pytest-benchmark suite: ``pytest bench --benchmark-json out.json [--ckpt ...] [--recipes ...] [--quick]``.

One test per recipe x scenario x device (``latency`` at batch 1, ``throughput`` at batch N). Each variant is
built once per session (:class:`VariantCache`), its accuracy measured once, then timed with
``benchmark.pedantic`` using explicit warm-up rounds (pytest-benchmark's own warm-up is off by default on
CPython, so lazy compilation would leak into the statistics) and a call that synchronizes CUDA before the
timer stops. ``benchmark.extra_info`` carries what the leaderboard and ``bench.gate`` need; the root
``conftest.py`` adds the machine fingerprint and keeps the raw samples in the JSON.
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def suite_options(config: pytest.Config):
    """The options the root conftest parsed (devices and threads resolved)."""
    return config._optbench.resolved()


SCENARIOS = ("latency", "throughput")


def _plain(value: Any) -> Any:
    """JSON-safe copy (paths, dtypes and the like become strings)."""
    return json.loads(json.dumps(value, default=str))


def _matrix(config: pytest.Config) -> list[Any]:
    """(device, recipe, scenario) parameters; recipes this machine cannot run are skipped with the reason."""
    from bench.sweep import validate_recipes
    from models.errors import InputError
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
        for recipe in recipes:
            reason = parse(recipe).unavailable_reason(device)
            if device == "cuda" and reason is None:
                import torch

                if not torch.cuda.is_available():
                    reason = "no CUDA device is visible"
            if reason:
                opts.skipped.append({"recipe": recipe, "device": device, "reason": reason})
            for scenario in SCENARIOS:
                marks = [pytest.mark.skip(reason=f"{recipe} on {device}: {reason}")] if reason else []
                params.append(pytest.param(device, recipe, scenario, id=f"{device}-{recipe}-{scenario}", marks=marks))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"device", "recipe", "scenario"} <= set(metafunc.fixturenames):
        metafunc.parametrize(("device", "recipe", "scenario"), _matrix(metafunc.config))


@dataclass
class BuiltVariant:
    """A variant built once, with everything measured outside the timed loop."""

    recipe: str
    device: str
    variant: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Suite:
    """Session state: the model, the data, the FP32 reference predictions per device, the scenarios."""

    loaded: Any
    data_spec: str | None
    data_dir: str | None
    workdir: Path
    threads: int
    quick: bool
    seed: int
    calib_size: int
    accuracy: bool
    batch_size: int | None
    _bundle: Any = None
    _references: dict[str, Any] = field(default_factory=dict)

    def data(self):
        """The shared DataBundle (calibration, fine-tuning and the accuracy pass); built on first use."""
        import data
        from models.errors import InputError

        if self._bundle is None:
            if not self.data_spec:
                raise InputError("this recipe needs data; pass --data")
            loader_cfg = data.LoaderConfig(batch_size=32, calib_size=self.calib_size, seed=self.seed)
            self._bundle = data.build(self.data_spec, self.loaded.info.data_config, loader_cfg, self.data_dir)
        return self._bundle

    def context(self, recipe: str, device: str):
        from bench.worker import safe_name
        from optim import BuildContext

        return BuildContext(
            loaded=self.loaded,
            device=device,
            workdir=self.workdir / safe_name(recipe) / device,
            threads=self.threads,
            seed=self.seed,
            quick=self.quick,
            calib_size=self.calib_size,
            data_factory=self.data,
        )

    @property
    def measures_accuracy(self) -> bool:
        return self.accuracy and self.loaded.info.has_weights and bool(self.data_spec)

    def reference(self, device: str, fp32_preds: Any = None):
        """FP32 top-1 predictions on val for agreement (from the fp32 variant when it runs, else built here)."""
        if device not in self._references:
            if fp32_preds is None:
                from bench.accuracy import evaluate_variant
                from optim import build

                fp32 = build("fp32", self.loaded, self.context("fp32", device))
                batch = self.scenario("throughput", device).batch_size
                _, fp32_preds = evaluate_variant(fp32, self.data().val, batch_size=batch)
            self._references[device] = fp32_preds
        return self._references[device]

    def scenario(self, name: str, device: str):
        from bench.timing import default_scenarios

        return next(s for s in default_scenarios(self.quick, device, self.batch_size) if s.name == name)


def _release_device_memory() -> None:
    """Between variants: drop compiled graphs (a second torch.compile may reuse the first), garbage, CUDA cache."""
    import torch

    gc.collect()
    torch._dynamo.reset()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class VariantCache:
    """Builds each (recipe, device) once and keeps only the current one alive.

    Tests run recipe-major (every scenario of a variant, then the next variant), so each variant is built
    exactly once; a reordered run (``-k``, ``--lf``) rebuilds rather than keeping every variant in memory.
    """

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.current: BuiltVariant | None = None
        self.failed: dict[tuple[str, str], str] = {}
        self.builds: dict[tuple[str, str], int] = {}

    def get(self, recipe: str, device: str) -> BuiltVariant:
        key = (recipe, device)
        if key in self.failed:
            return BuiltVariant(recipe, device, error=self.failed[key])
        if self.current is not None and (self.current.recipe, self.current.device) == key:
            return self.current
        self.current = None
        _release_device_memory()
        try:
            self.current = self._build(recipe, device)
        except Exception as exc:  # noqa: BLE001 - recorded and re-raised by every test of this variant
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.failed[key] = f"{type(exc).__name__}: {message}"
            raise
        self.builds[key] = self.builds.get(key, 0) + 1
        return self.current

    def _build(self, recipe: str, device: str) -> BuiltVariant:
        import torch

        from bench.accuracy import evaluate_variant
        from bench.timing import WallTimer, cuda_synchronize
        from optim import build

        suite = self.suite
        ctx = suite.context(recipe, device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        variant = build(recipe, suite.loaded, ctx)
        c, h, w = suite.loaded.info.input_size
        sync = cuda_synchronize if device == "cuda" else None
        first_input = torch.randn(1, c, h, w)
        first_ms = WallTimer(sync).time(lambda: variant.predict(variant.prepare_input(first_input))) * 1e3
        info: dict[str, Any] = {"first_call_ms": round(first_ms, 3)}
        if suite.measures_accuracy:
            reference = suite._references.get(device)
            # at the throughput batch: a static-shape compiled variant compiles it anyway, and no other size
            batch = suite.scenario("throughput", device).batch_size
            acc, preds = evaluate_variant(variant, suite.data().val, reference, batch)
            if reference is None:
                if recipe == "fp32":
                    suite.reference(device, preds)
                    acc["agreement"] = 100.0
                else:
                    ref = suite.reference(device)
                    acc["agreement"] = float((preds == ref).mean() * 100) if ref.size == preds.size else None
            info.update(acc)
        elif not suite.loaded.info.has_weights:
            info["accuracy_note"] = "random init: speed only, accuracy not measured"
        try:
            variant.save(ctx.workdir)  # on-disk size of what would ship; the measurement stands without it
        except Exception as exc:  # noqa: BLE001 - saving is not what is being benchmarked
            variant.manifest["save_error"] = f"{type(exc).__name__}: {exc}"
        info["size_mb"] = variant.manifest.get("size_mb")
        info["build_s"] = variant.manifest.get("build_s")
        if device == "cuda":
            info["max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return BuiltVariant(recipe, device, variant, info)


@pytest.fixture(scope="session")
def suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Load the model once, fix the thread count for the session (restored after), describe the run."""

    import models
    from bench.worker import set_threads, threads_restored
    from models.default import ensure_default_checkpoint
    from models.errors import InputError

    opts = suite_options(request.config)
    ckpt = opts.ckpt
    if ckpt is None and not opts.model:
        ckpt = str(ensure_default_checkpoint())
    try:
        loaded = models.load(ckpt, arch=opts.model, num_classes=opts.num_classes, img_size=opts.img_size)
    except InputError as exc:
        pytest.exit(f"error: {exc}", returncode=2)
    info = loaded.info
    data_spec = opts.data or info.data_spec or "digits"
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
        }
        yield Suite(
            loaded=loaded,
            data_spec=data_spec,
            data_dir=opts.data_dir,
            workdir=tmp_path_factory.mktemp("variants"),
            threads=opts.threads,
            quick=opts.quick,
            seed=opts.seed,
            calib_size=opts.calib_size,
            accuracy=opts.accuracy,
            batch_size=opts.batch_size,
        )


@pytest.fixture(scope="session")
def variants(suite: Suite) -> VariantCache:
    cache = VariantCache(suite)
    yield cache
    cache.current = None
    _release_device_memory()


def _timed_call(variant: Any, host: Any, device: str) -> Callable[[], Any]:
    """The timed call: host batch in, logits out; on CUDA it returns only after the GPU finished."""
    import torch

    predict, prepare = variant.predict, variant.prepare_input
    if device == "cuda":

        def call() -> Any:
            out = predict(prepare(host))
            torch.cuda.synchronize()
            return out

        return call
    return lambda: predict(prepare(host))


def _rounds(call: Callable[[], Any], scenario: Any) -> tuple[int, int]:
    """(warm-up rounds, timed rounds) meeting the scenario's minimum count and duration, capped by its maximum."""
    probes = []
    for _ in range(3):
        start = time.perf_counter()
        call()
        probes.append(time.perf_counter() - start)
    per_call = max(sorted(probes)[1], 1e-6)
    warmup = max(scenario.warmup_iters, math.ceil(scenario.warmup_seconds / per_call))
    rounds = max(scenario.min_iters, math.ceil(scenario.min_seconds / per_call))
    cap = max(5, int(scenario.max_seconds / per_call))
    return min(warmup, cap), min(rounds, cap)


def test_variant(benchmark, variants: VariantCache, suite: Suite, device: str, recipe: str, scenario: str) -> None:
    """Time one variant in one scenario; accuracy and build facts ride along in ``extra_info``."""
    import torch

    from bench.timing import CudaEventTimer, run_timed, summarize
    from bench.worker import host_batch

    built = variants.get(recipe, device)
    if built.error:
        pytest.fail(f"{recipe} on {device} failed to build earlier in this session: {built.error}", pytrace=False)
    variant = built.variant
    cfg = suite.scenario(scenario, device)
    host = host_batch(suite.loaded.info.input_size, cfg.batch_size, suite.seed, device)
    call = _timed_call(variant, host, device)
    warmup_rounds, rounds = _rounds(call, cfg)

    benchmark.group = f"{device} {scenario} b{cfg.batch_size}"
    benchmark.extra_info.update(
        variant=variant.name,
        recipe=recipe,
        scenario=scenario,
        device=device,
        batch_size=cfg.batch_size,
        threads=suite.threads,
        quick=suite.quick,
        warmup_rounds=warmup_rounds,
        timer="perf_counter; the call ends with torch.cuda.synchronize()" if device == "cuda" else "perf_counter",
        **_plain(built.info),
    )
    benchmark.pedantic(call, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)

    if benchmark.stats is not None:  # None under --benchmark-disable: the call ran once, untimed
        stats = summarize(list(benchmark.stats.stats.data), cfg.batch_size)
        benchmark.extra_info.update({k: round(v, 6) for k, v in stats.items() if k != "n"})
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
