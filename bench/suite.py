"""What the ``pytest bench`` suite keeps for a session: the loaded model, its data and run configuration
(:class:`Suite`), each variant built once (:class:`VariantCache`), and the timed call with its warm-up and rounds.

The tests themselves are in ``bench/test_benchmarks.py``; this module holds no test so pytest collects nothing here.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optim.registry import REFERENCE


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
    """Session state: the model, its data, the FP32 reference predictions per device, one run config per device."""

    loaded: Any
    options: Any  # conftest.SuiteOptions
    data_spec: str | None
    workdir: Path
    _bundle: Any = None
    _references: dict[str, Any] = field(default_factory=dict)

    def config(self, device: str):
        return self.options.run_config(device)

    def data(self):
        """The shared DataBundle (calibration, fine-tuning and the accuracy pass); built on first use."""
        from optim.context import build_context

        if self._bundle is None:
            self._bundle = build_context(self.config("cpu").build_settings(), self.loaded, self.workdir).data_factory()
        return self._bundle

    def context(self, recipe: str, device: str):
        """The build context every command uses, sharing this session's data."""
        from bench.run.process import safe_name
        from optim.context import build_context

        settings = self.config(device).build_settings()
        ctx = build_context(settings, self.loaded, self.workdir / safe_name(recipe) / device)
        ctx.data_factory = self.data
        return ctx

    @property
    def measures_accuracy(self) -> bool:
        return self.options.accuracy and self.loaded.info.has_weights and bool(self.data_spec)

    def reference(self, device: str, fp32_preds: Any = None):
        """FP32 top-1 predictions on val for agreement (from the fp32 variant when it runs, else built here)."""
        if device not in self._references:
            if fp32_preds is None:
                from optim import build
                from optim.evaluate import evaluate_variant

                fp32 = build(REFERENCE, self.loaded, self.context(REFERENCE, device))
                _, fp32_preds = evaluate_variant(fp32, self.data().val, batch_size=self.eval_batch(device))
            self._references[device] = fp32_preds
        return self._references[device]

    def scenario(self, name: str, device: str):
        return next(s for s in self.config(device).scenarios if s.name == name)

    def eval_batch(self, device: str) -> int:
        """Accuracy runs at the largest batch timed: a static-shape compiled variant compiles it anyway."""
        return self.config(device).build_settings().max_batch


def release_device_memory() -> None:
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
        self.failed: dict[tuple[str, str], tuple[str, str]] = {}  # (error line, failure code)
        self.builds: dict[tuple[str, str], int] = {}

    def get(self, recipe: str, device: str) -> BuiltVariant:
        key = (recipe, device)
        if key in self.failed:
            return BuiltVariant(recipe, device, error=self.failed[key][0])
        if self.current is not None and (self.current.recipe, self.current.device) == key:
            return self.current
        self.current = None
        release_device_memory()
        try:
            self.current = self._build(recipe, device)
        except Exception as exc:  # noqa: BLE001 - recorded and re-raised by every test of this variant
            from bench.run.failures import failure_code, failure_text

            self.failed[key] = (failure_text(exc), failure_code(exc))
            raise
        self.builds[key] = self.builds.get(key, 0) + 1
        return self.current

    def _build(self, recipe: str, device: str) -> BuiltVariant:
        import torch

        from models.timers import WallTimer, cuda_synchronize
        from optim import build
        from optim.evaluate import evaluate_variant

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
            acc, preds = evaluate_variant(variant, suite.data().val, reference, suite.eval_batch(device))
            if reference is None:
                if recipe == REFERENCE:
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


def timed_call(variant: Any, host: Any, device: str) -> Callable[[], Any]:
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


def rounds_for(call: Callable[[], Any], scenario: Any) -> tuple[int, int]:
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
