"""The serving measurement inside a measurement process: copies of the loaded variant as instances, each with
inputs for every batch size prepared and warmed before the clock runs, the configuration search
(:mod:`bench.measure.serving_search`), the harness's own ceiling, and the scenario's part of the result row."""

from __future__ import annotations

import os
import time
from typing import Any

from bench.measure.idle_call import idle_cost, idle_note
from bench.measure.serving_search import SearchSettings, best_configuration, splits_for, to_dict

CEILING_BUDGET_S = 3.0


class Instances:
    """Instances of the process's variant for each instance x thread split, loaded once and reused.

    One instance with the run's threads is the variant already loaded; other splits load copies from the variant's
    folder with their thread count (ONNX Runtime and OpenVINO fix it when a model is loaded; torch's is set again
    before each search, see :meth:`make`)."""

    def __init__(self, prep: Any) -> None:
        self.prep = prep
        self.copies: dict[tuple[int, int], list[Any]] = {}
        self.max_batch = 1

    def _set_threads(self, threads: int) -> None:
        import torch

        os.environ["OPTBENCH_THREADS"] = str(threads)
        torch.set_num_threads(threads)

    def _load(self, count: int, threads: int) -> list[Any]:
        from optim import Variant

        prep = self.prep
        if count == 1 and threads == prep.job.threads:
            return [prep.variant]
        return [Variant.load(prep.workdir, prep.job.device, base=prep.job.config.load) for _ in range(count)]

    def _callable(self, variant: Any):
        """``f(n)``: one call at batch ``n`` on inputs prepared now, every size warmed once (shapes compile here).

        A compiled variant specializes on the batch size, so a short batch is padded to the next power of two (at
        most the largest batch), as the exported service pads it: five graphs rather than sixteen, and no size past
        torch.compile's recompile limit running uncompiled."""
        import torch

        from bench.scenarios.batch import host_batch
        from optim.variant import loading_compiles

        prep = self.prep
        device = prep.job.device
        size = padded_size if loading_compiles(variant.manifest) else (lambda n, _: n)
        inputs = {
            n: variant.prepare_input(host_batch(prep.info.input_size, n, prep.job.seed, device))
            for n in sorted({size(k, self.max_batch) for k in range(1, self.max_batch + 1)})
        }
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def call(n: int) -> None:
            variant.predict(inputs[size(n, self.max_batch)])
            sync()

        with torch.inference_mode():
            for n in inputs:
                call(n)
        return call

    def make(self, count: int, threads: int) -> list[Any]:
        self._set_threads(threads)
        key = (count, threads)
        if key not in self.copies:
            self.copies[key] = [self._callable(v) for v in self._load(count, threads)]
        return self.copies[key]


def padded_size(count: int, largest: int) -> int:
    """The batch a compiled variant runs for ``count`` requests: the next power of two, at most ``largest``."""
    return min(largest, 1 << (count - 1).bit_length())


def _bound_s(cfg: Any) -> float:
    slo = cfg.options.get("slo_ms")
    if not slo:
        raise ValueError("the serving stage sets the bound (slo_ms) before it starts a measurement")
    return float(slo) / 1e3


def measure(state: Instances, cfg: Any) -> dict[str, Any]:
    """The best configuration within this variant's budget (``cfg.options["budget_s"]``), and the harness ceiling."""
    import torch

    from bench.measure.rate_search import harness_ceiling
    from bench.measure.threads import unpin_threads

    unpin_threads()  # the instances' worker threads must not inherit the calling thread's single CPU
    prep = state.prep
    bound = _bound_s(cfg)
    state.max_batch = cfg.batch_size
    started = time.perf_counter()
    with torch.inference_mode():
        idle = idle_cost(lambda: state.make(1, prep.job.threads)[0](1))
    budget = max(1.0, float(cfg.options.get("budget_s") or 60.0) - (time.perf_counter() - started))
    quick = bool(prep.job.quick)
    settings = SearchSettings(
        budget_s=budget,
        per_config_s=max(8.0, budget / 4),
        min_duration_s=0.5 if quick else 1.0,
        rel_tol=0.15 if quick else 0.1,
        seed=prep.job.seed,
    )
    splits = splits_for(prep.job.threads, prep.job.device)
    with torch.inference_mode():
        result = best_configuration(state.make, splits, bound, settings)
    widest = max(k for k, _ in splits)
    ceiling = harness_ceiling(1, 0.0, widest, bound, budget_s=CEILING_BUDGET_S)
    state._set_threads(prep.job.threads)
    return {
        **to_dict(result),
        "ceiling_rate": ceiling.best_rate,
        "splits": [list(s) for s in splits],
        "idle_call": idle,
    }


LOWER_BOUND_NOTE = (
    "serves at least {rate:,.0f} req/s: no faster rate was tried before the search's time ran out, so the rate it "
    "holds may be higher (--serve-minutes)"
)


def result_row(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The serving row's fields: the best configuration's rate, p99 and settings, or why there is none."""
    best = result.get("best")
    row: dict[str, Any] = {
        "scenario": name,
        "serve_slo_ms": result["bound_ms"],
        "serve_search": result,
        "serve_ceiling_rate": result.get("ceiling_rate"),
        "serve_seconds": result.get("elapsed_s"),
    }
    idle = result.get("idle_call") or {}
    if idle:
        row.update(serve_idle_p50_ms=idle["idle_p50_ms"], serve_busy_p50_ms=idle["busy_p50_ms"])
    slow_when_idle = idle_note(idle)
    if best:
        delay_ms = best["max_delay_s"] * 1e3
        row.update(
            batch_size=best["max_batch"],
            serve_rate=best["rate"],
            serve_p99_ms=best["p99_ms"],
            serve_config=best["label"],
            serve_max_batch=best["max_batch"],
            serve_delay_ms=delay_ms,
            serve_instances=best["instances"],
            serve_threads=best["threads"],
            serve_rate_lower_bound=bool(best.get("rate_is_lower_bound")),
            serve_best={
                "max_batch": best["max_batch"],
                "max_delay_ms": delay_ms,
                "instances": best["instances"],
                "threads": best["threads"],
                "rate": best["rate"],
                "p99_ms": best["p99_ms"],
                "slo_ms": result["bound_ms"],
                "rate_is_lower_bound": bool(best.get("rate_is_lower_bound")),
            },
        )
        notes = [LOWER_BOUND_NOTE.format(rate=best["rate"])] if best.get("rate_is_lower_bound") else []
        if slow_when_idle:
            notes.append(slow_when_idle)
        if notes:
            row["note"] = "; ".join(notes)
        return row
    row["serve_rate"] = 0.0
    row["note"] = f"no serving configuration held p99 <= {result['bound_ms']:.3g} ms" + _closest_text(
        result.get("closest"), result["bound_ms"]
    )
    if slow_when_idle:
        row["note"] += f"; {slow_when_idle}"
    return row


def _closest_text(closest: dict[str, Any] | None, bound_ms: float) -> str:
    """The best p99 reached, and why a p99 under the bound still claimed nothing."""
    if not closest:
        return ""
    text = f"; the best p99 reached was {closest['p99_ms']:.3g} ms at {closest['rate']:.3g} req/s ({closest['config']})"
    if closest["p99_ms"] > bound_ms:
        return text
    if closest.get("full"):
        return text + (
            ", under the bound but too close to it for the early-stopping rule, which claims a rate only when its p99 "
            "is within the bound at 99% confidence"
        )
    return text + " in a screening trial, which no full trial confirmed (only a full trial claims a rate)"
