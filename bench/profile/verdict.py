"""Turn measured loop timings into a verdict: is this target bound by its input pipeline or by compute?

Pure functions over plain numbers, so the decision logic is tested on synthetic timings as well as on
real loops. A step of a training (or serving) loop is ``wait`` (blocked in ``next(iterator)`` plus the
host-to-device copy) followed by ``compute`` (the train step or predict, synchronized on GPUs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# Fraction of the step spent waiting for data at or above which the loop is called data-bound.
DATA_BOUND_FRACTION = 0.5
# At or below this the input pipeline is negligible: compute-bound, no fixes are worth trying.
COMPUTE_BOUND_FRACTION = 0.2
# A fix must be at least this much faster (images/s) to be reported as helping; below it is noise.
HELPS = 1.05
NO_FIX_HINT = (
    "the CPU may be saturated: make samples cheaper to produce (pre-resized images, precomputed features) or use a "
    "machine with more cores"
)

DATA, COMPUTE, MIXED = "data-bound", "compute-bound", "mixed"


@dataclass(frozen=True)
class LoopTiming:
    """Per-step seconds of one measured loop: waiting for the batch vs computing on it."""

    label: str
    wait_s: tuple[float, ...]
    compute_s: tuple[float, ...]
    batch_size: int
    startup_s: float | None = None  # first batch of a fresh iterator at an epoch start (worker spawn lands here)
    unit: str = "img"  # what batch_size counts: img, or samples / steps for a user's own step

    def __post_init__(self) -> None:
        if len(self.wait_s) != len(self.compute_s):
            raise ValueError(f"{self.label}: {len(self.wait_s)} wait samples but {len(self.compute_s)} compute samples")
        if not self.wait_s:
            raise ValueError(f"{self.label}: no steps were timed")
        if any(t < 0 for t in (*self.wait_s, *self.compute_s)):
            raise ValueError(f"{self.label}: negative durations")

    @property
    def steps(self) -> int:
        return len(self.wait_s)

    @property
    def wait_total(self) -> float:
        return math.fsum(self.wait_s)

    @property
    def compute_total(self) -> float:
        return math.fsum(self.compute_s)

    @property
    def step_mean(self) -> float:
        return (self.wait_total + self.compute_total) / self.steps

    @property
    def data_fraction(self) -> float:
        total = self.wait_total + self.compute_total
        return self.wait_total / total if total > 0 else 0.0

    @property
    def compute_fraction(self) -> float:
        return 1.0 - self.data_fraction

    @property
    def images_per_s(self) -> float:
        mean = self.step_mean
        return self.batch_size / mean if mean > 0 else math.inf

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "wait_ms_mean": 1e3 * self.wait_total / self.steps,
            "compute_ms_mean": 1e3 * self.compute_total / self.steps,
            "step_ms_mean": 1e3 * self.step_mean,
            "data_fraction": self.data_fraction,
            "compute_fraction": self.compute_fraction,
            "images_per_s": self.images_per_s,
            "unit": self.unit,
            "epoch_start_ms": None if self.startup_s is None else 1e3 * self.startup_s,
        }


@dataclass
class Verdict:
    """What a user reads: which side bounds the target, the measured fractions, and what each fix did."""

    target: str
    bound: str
    data_fraction: float | None  # None when the step loads its own data: nothing to split
    compute_fraction: float | None
    summary: str
    measurements: dict[str, Any] = field(default_factory=dict)
    fixes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify(data_fraction: float) -> str:
    """``data-bound`` at >= 50% waiting, ``compute-bound`` at <= 20%, ``mixed`` between."""
    if not 0.0 <= data_fraction <= 1.0 or math.isnan(data_fraction):
        raise ValueError(f"data fraction must be in [0, 1], got {data_fraction}")
    if data_fraction >= DATA_BOUND_FRACTION:
        return DATA
    if data_fraction <= COMPUTE_BOUND_FRACTION:
        return COMPUTE
    return MIXED


def worth_fixing(data_fraction: float) -> bool:
    """Input-pipeline fixes are tried when waiting for data is more than a negligible part of the step."""
    return classify(data_fraction) != COMPUTE


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _best(fixes: Sequence[LoopTiming]) -> LoopTiming | None:
    return max(fixes, key=lambda t: t.images_per_s) if fixes else None


COMPUTE_ADVICE = "the input pipeline keeps up, so speed up the model (see python -m bench for variants)"


def loop_verdict(
    target: str,
    base: LoopTiming,
    fixes: Sequence[LoopTiming] = (),
    what: str = "step",
    compute_advice: str = COMPUTE_ADVICE,
) -> Verdict:
    """Verdict of a train or infer loop: the share of each step spent waiting for data, and the best measured fix.

    ``fixes`` are the same loop re-measured with one change each (their ``label`` names the change).
    """
    bound = classify(base.data_fraction)
    s = base.summary()
    per = f"step, {base.images_per_s:.1f} steps/s" if base.unit == "steps" else f"batch of {base.batch_size}"
    if base.unit != "steps":
        per += f", {base.images_per_s:.0f} {base.unit}/s"
    text = (
        f"{target}: data loading is {_pct(base.data_fraction)} of the {what} "
        f"({s['wait_ms_mean']:.1f} ms waiting + {s['compute_ms_mean']:.1f} ms computing per {per}): {bound}"
    )
    best = _best(fixes)
    if best is not None:
        speedup = best.images_per_s / base.images_per_s if base.images_per_s > 0 else math.nan
        if speedup >= HELPS and best.data_fraction < base.data_fraction:
            text += (
                f"; {best.label} brings it to {_pct(best.data_fraction)} "
                f"(measured: {best.images_per_s:.0f} {best.unit}/s, {speedup:.2f}x)"
            )
        elif speedup >= HELPS:  # faster overall, though waiting still takes as large a share of the shorter step
            text += (
                f"; {best.label} is fastest (measured: {best.images_per_s:.0f} {best.unit}/s, {speedup:.2f}x), "
                f"data still {_pct(best.data_fraction)} of the step"
            )
        else:
            text += f"; none of the fixes tried helped (best: {best.label}, {speedup:.2f}x, measured); {NO_FIX_HINT}"
    elif bound == COMPUTE:
        text += f"; {compute_advice}"
    return Verdict(
        target=target,
        bound=bound,
        data_fraction=base.data_fraction,
        compute_fraction=base.compute_fraction,
        summary=text,
        measurements={"base": s},
        fixes=[f.summary() for f in fixes],
    )


def serial_data_fraction(loader_img_s: float, model_img_s: float) -> float:
    """Share of time spent loading if the loader and the model ran one after the other (single process).

    Per image the loader needs ``1/loader`` seconds and the model ``1/model``; the fraction is their ratio.
    """
    if loader_img_s <= 0 or model_img_s <= 0:
        raise ValueError(f"rates must be positive, got loader {loader_img_s} and model {model_img_s} img/s")
    per_loader, per_model = 1.0 / loader_img_s, 1.0 / model_img_s
    return per_loader / (per_loader + per_model)


def data_verdict(
    loader_img_s: float,
    model_img_s: float,
    model_label: str = "the train step",
    fixes: Sequence[tuple[str, float] | tuple[str, float, float | None]] = (),
) -> Verdict:
    """Verdict of the ``data`` target: the loader's images/s alone against what the model consumes.

    A loader slower than the model starves it (data-bound); ``fixes`` are (change, loader images/s) pairs
    measured on the spot, optionally with a third item: the epoch start in seconds.
    """
    fraction = serial_data_fraction(loader_img_s, model_img_s)
    bound = classify(fraction)
    headroom = loader_img_s / model_img_s
    text = (
        f"data: the loader alone delivers {loader_img_s:.0f} img/s, {model_label} consumes {model_img_s:.0f} img/s "
        f"({headroom:.2f}x headroom); run one after the other, loading would be {_pct(fraction)} of the time: {bound}"
    )
    fix_rows = []
    for label, rate, *rest in fixes:
        epoch = rest[0] if rest else None
        fix_rows.append(
            {
                "label": label,
                "images_per_s": rate,
                "data_fraction": serial_data_fraction(rate, model_img_s),
                "epoch_start_ms": None if epoch is None else 1e3 * epoch,
            }
        )
    if fix_rows:
        best = max(fix_rows, key=lambda r: r["images_per_s"])
        speedup = best["images_per_s"] / loader_img_s
        if speedup >= HELPS:
            text += (
                f"; {best['label']} brings the loader to {best['images_per_s']:.0f} img/s "
                f"(measured: {speedup:.2f}x) and loading to {_pct(best['data_fraction'])}"
            )
        else:
            text += f"; none of the fixes tried helped (best: {best['label']}, {speedup:.2f}x, measured); {NO_FIX_HINT}"
    return Verdict(
        target="data",
        bound=bound,
        data_fraction=fraction,
        compute_fraction=1.0 - fraction,
        summary=text,
        measurements={"loader_images_per_s": loader_img_s, "model_images_per_s": model_img_s, "model": model_label},
        fixes=fix_rows,
    )
