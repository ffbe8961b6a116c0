"""What each target of ``python -m bench.profile`` runs, and how its verdict is measured with no profiler attached.

``data``, ``train`` and ``infer`` come from a checkpoint and its data; ``step`` is the user's own step function
(:mod:`bench.profile.user_step`). Every target is a :class:`~bench.profile.workloads.Workload`, so the three
profilers and the loop timer treat them alike; only the verdict differs (the data target compares rates, the
others split each step into waiting and computing).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import DataLoader

from bench.profile.verdict import COMPUTE_ADVICE
from bench.profile.workloads import Workload

WHAT = {"train": "train step", "infer": "predict step", "step": "step"}
OWN_DATA_NOTE = (
    "the step fetches its own data, so its data share is not measured: return (step, data) from the factory to "
    "have the data side timed apart"
)
STEP_ADVICE = "the input pipeline keeps up, so speed up the step itself (the profiles above show where its time goes)"
UNSPLIT = "not split"


def model_rates(model, batch, device: str, steps: int) -> dict[str, float]:
    """Images/s of a train step and of an inference forward alone, on one batch already in memory."""
    import torch

    from bench.profile.measure import time_compute
    from bench.profile.workloads import train_compute

    trainee = copy.deepcopy(model).to(device).train()
    compute, _, _ = train_compute(trainee)
    images, targets = batch[0].to(device), batch[1].to(device)
    train_rate = time_compute(compute, (images, targets), steps, device)
    evaluated = copy.deepcopy(model).to(device).eval()

    def forward(b) -> None:
        with torch.inference_mode():
            evaluated(b[0])

    forward_rate = time_compute(forward, (images, targets), steps, device)
    return {"train_step_images_per_s": train_rate, "forward_images_per_s": forward_rate}


def checkpoint_workload(target: str, loaded, bundle, run_cfg, recipe, device: str, run_dir: Path):
    """The workload of a checkpoint target and the model it trains (None unless ``train``)."""
    from bench.profile.workloads import data_workload, infer_workload, train_workload

    if target == "data":
        return data_workload(bundle.train, device), None
    if target == "train":
        model = copy.deepcopy(loaded.model)
        return train_workload(model, bundle.train, device), model
    from optim import build
    from optim.context import build_context

    variant = build(recipe, loaded, build_context(run_cfg.build_settings(), loaded, run_dir / "variant"))
    return infer_workload(variant, bundle.val, device), None


def _data_target_verdict(workload: Workload, loaded, steps: int, try_fixes_: bool, log: Callable[[str], None]):
    from bench.profile.measure import time_loop, try_fixes
    from bench.profile.verdict import data_verdict, worth_fixing

    base = time_loop(workload, steps, "as configured")
    sample = next(iter(workload.loader))
    rates = model_rates(loaded.model, sample, workload.device, max(2, min(steps, 5)))
    verdict = data_verdict(base.images_per_s, rates["train_step_images_per_s"], "the train step")
    if try_fixes_ and worth_fixing(verdict.data_fraction):
        trials = try_fixes(workload, steps, base, log=log)
        fixes = [(t.label, t.images_per_s, t.startup_s) for t in trials]
        verdict = data_verdict(base.images_per_s, rates["train_step_images_per_s"], "the train step", fixes)
    verdict.measurements.update(rates)
    verdict.measurements["loader"] = base.summary()
    verdict.summary += f" (forward alone: {rates['forward_images_per_s']:.0f} img/s)"
    return verdict


def measure_verdict(target: str, workload: Workload, model, loaded, steps: int, try_fixes_: bool, log):
    """The target's verdict from plain timed steps; input-pipeline fixes are re-measured when a DataLoader feeds
    it and waiting is more than a negligible share of the step."""
    from bench.profile.measure import time_loop, try_fixes
    from bench.profile.verdict import loop_verdict, worth_fixing

    if target == "data":
        return _data_target_verdict(workload, loaded, steps, try_fixes_, log)
    base = time_loop(workload, steps, "as configured")
    if workload.fetches_nothing:
        return _unsplit_verdict(base)
    trials = []
    if try_fixes_ and isinstance(workload.loader, DataLoader) and worth_fixing(base.data_fraction):
        trials = try_fixes(workload, steps, base, model=model if target == "train" else None, log=log)
    advice = STEP_ADVICE if target == "step" else COMPUTE_ADVICE
    return loop_verdict(target, base, trials, what=WHAT[target], compute_advice=advice)


def _unsplit_verdict(base):
    """A step that loads its own data: its time is measured, its data share is not (and is not claimed to be 0)."""
    from bench.profile.verdict import Verdict

    s = base.summary()
    text = f"step: {s['step_ms_mean']:.1f} ms per step, {base.images_per_s:.1f} steps/s; {OWN_DATA_NOTE}"
    return Verdict("step", UNSPLIT, None, None, text, measurements={"base": s})


def fix_table(verdict) -> str:
    """The base measurement and every fix tried, one row each (empty when no fix was tried)."""
    from tabulate import tabulate

    if not verdict.fixes:
        return ""
    m = verdict.measurements
    base = m.get("base") or {**m.get("loader", {}), "data_fraction": verdict.data_fraction}
    rows = []
    for f in [{**base, "label": "as configured"}, *verdict.fixes]:
        epoch = f.get("epoch_start_ms")
        rows.append(
            [
                f["label"],
                f"{100 * f['data_fraction']:.0f}%",
                f"{f['images_per_s']:.0f}",
                "" if epoch is None else f"{epoch:.0f}",
            ]
        )
    rate = "loader img/s" if "loader" in m else f"{base.get('unit', 'img')}/s"
    return tabulate(rows, headers=["measured", "data share", rate, "epoch start ms"], tablefmt="simple")
