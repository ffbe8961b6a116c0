"""The timed loop the batch scenarios share (:class:`BatchScenario`: a fixed batch called back to back, warmed up
once, timed in slices when paired with the fp32 reference or its whole budget at once), and the host batch every
process of a run feeds the same way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.scenarios.base import Scenario
from bench.scenarios.config import ScenarioConfig

T = TypeVar("T")
UNPAIRED = (
    "speedups unpaired",
    "speedups are ratios of figures timed one after the other, not interleaved with fp32: a drift of the machine "
    "between them (another process, a throttled clock) reads as a speedup. `python -m bench` pairs each variant "
    "with fp32 by default.",
)


@dataclass
class TimedCall:
    """A warm call of a variant at a fixed batch: what a batch scenario's slices time."""

    call: Callable[[], Any]
    timer: Any
    batch: int
    note: str | None = None


class BatchScenario(Scenario):
    """A fixed batch called back to back: warm up, then time calls (in slices when paired, else all at once)."""

    def batch_size(self, options: Any, device: str) -> int:
        raise NotImplementedError

    def budgets(self, quick: bool) -> dict[str, Any]:
        raise NotImplementedError

    def config(self, options: Any, device: str) -> ScenarioConfig | None:
        return ScenarioConfig(self.name, self.batch_size(options, device), **self.budgets(bool(options.quick)))

    def caveats(self, rows: list[Mapping[str, Any]]) -> list[str | tuple[str, str]]:
        """Speedups from figures timed apart (``--unpaired``, ``pytest bench``) carry the machine's drift."""
        from optim.registry import REFERENCE

        mine = [r for r in rows if r.get("scenario") == self.name and r.get("status") == "ok"]
        if any(r.get("variant") != REFERENCE and not isinstance(r.get("paired"), dict) for r in mine):
            return [UNPAIRED]
        return []

    def prepare(self, prep: Any, cfg: ScenarioConfig) -> TimedCall:
        """Warm the call up once; on a GPU that runs out of memory, halve the batch (down to 1) and say so.

        ``prep``: the measurement process's built variant (:class:`bench.run.process.Prepared`)."""
        from models.timers import WallTimer, cuda_synchronize, warm_up

        variant, input_size, seed, device = prep.variant, prep.info.input_size, prep.job.seed, prep.job.device
        timer = WallTimer(cuda_synchronize if device == "cuda" else None)

        def attempt(batch: int):
            host = host_batch(input_size, batch, seed, device)

            def call():
                return variant.predict(variant.prepare_input(host))

            warm_up(call, cfg, timer)
            return call

        call, batch, note = halve_on_oom(cfg.batch_size, attempt)
        return TimedCall(call, timer, batch, note)

    def time_slice(self, timed: TimedCall, seconds: float, min_calls: int) -> list[float]:
        """One slice: calls for ``seconds`` and at least ``min_calls`` (a slow call is a slice of one)."""
        from models.timers import time_calls

        return time_calls(timed.call, timed.timer, max(1, int(min_calls)), float(seconds), max(60.0, 4 * seconds))

    def time_alone(self, timed: TimedCall, cfg: ScenarioConfig) -> list[float]:
        """The whole budget at once (unpaired)."""
        from models.timers import time_calls

        return time_calls(timed.call, timed.timer, cfg.min_iters, cfg.min_seconds, cfg.max_seconds)

    def summary(self, samples_s: list[float], batch: int) -> dict[str, Any]:
        """The row's figures from per-call seconds (``python -m bench`` and ``pytest bench`` alike)."""
        from models.timers import summarize

        return summarize(samples_s, batch)

    def row(self, prep: Any, cfg: ScenarioConfig, timed: TimedCall, slices: list[list[float]]) -> dict[str, Any]:
        """The scenario's part of a result row: percentiles, every sample, the slices' lengths, which timer took
        them, and on CUDA the same calls timed device-only (the GPU is not shared here, so no pairing is needed)."""
        from models.timers import CudaEventTimer, run_timed

        job, batch = prep.job, timed.batch
        pooled = [s for chunk in slices for s in chunk]
        row: dict[str, Any] = {"scenario": self.name, "batch_size": batch, **self.summary(pooled, batch)}
        row["samples_ms"] = [round(s * 1e3, 6) for s in pooled]
        row["slice_lengths"] = [len(chunk) for chunk in slices]
        cuda_timer = "perf_counter+cuda_synchronize (end-to-end, pinned host batch copied in)"
        row["timer"] = cuda_timer if job.device == "cuda" else "perf_counter"
        if job.device == "cuda":
            ready = prep.variant.prepare_input(host_batch(prep.info.input_size, batch, job.seed, "cuda"))
            device_only = run_timed(lambda: prep.variant.predict(ready), cfg, CudaEventTimer())
            row.update({f"device_{k}": v for k, v in self.summary(device_only, batch).items() if k != "n"})
            row["device_timer"] = "cuda_events (device-only, input already on the GPU)"
        if timed.note:
            row["note"] = timed.note
        return row


def host_batch(input_size, batch: int, seed: int, device: str):
    """The host batch timed calls copy in: fixed by the seed, so every process of a run feeds the same data.

    On CUDA it is pinned, as ``DataLoader(pin_memory=True)`` hands batches to a serving loop: a pageable batch
    is staged through a bounce buffer, and at batch 128 that extra copy of 77 MB would cap every variant's
    end-to-end throughput whatever the model does.
    """
    import torch

    c, h, w = input_size
    x = torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(seed))
    return x.pin_memory() if device == "cuda" else x


def halve_on_oom(batch: int, attempt: Callable[[int], T]) -> tuple[T, int, str | None]:
    """``attempt(batch)``; when the GPU runs out of memory, halve the batch and try again (down to 1).

    Returns (result, the batch that worked, a note for the row when it is not the one asked for)."""
    import torch

    note = None
    while True:
        try:
            return attempt(batch), batch, note
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            torch.cuda.empty_cache()
            note = f"batch {batch} ran out of GPU memory; measured at batch {batch // 2}"
            batch //= 2
