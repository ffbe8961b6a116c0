"""Structured channel pruning with torch-pruning, then a short fine-tune: ``prune(0.5)`` / ``python -m optim.prune``.

Channels are removed for real (layers get narrower), so the pruned model is a smaller dense model that any
backend runs faster, unlike unstructured sparsity. The classifier is never pruned and widths are rounded to
multiples of 8 (SIMD and tensor-core friendly). In transformers laid out like timm's ViT (a fused ``qkv``), the
embedding width and the same share of every head's width go, and the head count stays. MACs and parameters
before/after come from torch-pruning's counter, and the speedup is *measured*: fewer MACs does not always mean
faster (narrower layers can fall off the fastest kernels), and the manifest says so when it is not.

The pruned variant is saved as our checkpoint plus per-layer shapes (:mod:`models.pruned`), never as a pickled
module, so ``models.load`` rebuilds it with ``weights_only=True``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from data.errors import ArgumentParser, InputError, run_cli
from optim.args import add_options, step_text, values_of
from optim.artifact import BUILD_SPEED_CHECK, Artifact, BuildContext
from optim.backends.pruning import (
    DEFAULT_FINETUNE_EPOCHS,
    IMPORTANCES,
    NOT_FASTER_BELOW,
    PruneConfig,
    finetune,
    measure_speedup,
    prune_module,
    speed_note,
)
from optim.registry import MODULE, Arg, register_step

if __name__ == "__main__":
    # `python -m optim.prune` runs this file as __main__; run the importable module instead so the recipe step
    # registers exactly once (load_producers imports optim.prune again).
    from optim.prune import main as _main

    run_cli(_main)


PRUNE_ARGS = (
    Arg("ratio", float, help="fraction of channels removed, in (0, 1)", positional=True, required=True),
    Arg("importance", default=IMPORTANCES[0], help="how channels are ranked", choices=IMPORTANCES),
    Arg("steps", int, 1, "iterative pruning steps to reach the ratio"),
    Arg("finetune_epochs", int, DEFAULT_FINETUNE_EPOCHS, "fine-tuning epochs on the train split", key="finetune"),
    Arg("distill", float, 0.0, "weight of distillation from the unpruned model, in [0, 1]"),
)


@register_step(
    "prune",
    accepts=[MODULE],
    produces=MODULE,
    args=PRUNE_ARGS,
    check=lambda args: PruneConfig(**args).validate(),
    description="structured channel pruning (torch-pruning, round_to=8, classifier kept), then fine-tune on train",
    slow_hints=lambda args, device, flags: [
        "pruned channel counts that are not multiples of 8/16 can fall off the fast oneDNN/cuDNN paths"
    ],
    default_recipes={"cpu": ["prune(0.3)", "prune(0.5)"], "cuda": ["prune(0.3)", "prune(0.5)"]},
    compresses=True,
)
def prune_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """Prune the module, fine-tune it, and record MACs/params before and after plus a measured speedup."""
    from models.pruned import channel_summary, with_pruned_layers
    from optim.eager import eager_save_hook

    cfg = PruneConfig(**args).validate()
    model = artifact.module
    if model is None:
        raise InputError("prune needs an eager module")
    info = ctx.loaded.info
    model = model.float().cpu().eval()
    teacher = copy.deepcopy(model).eval()  # the distillation teacher and the speed check's reference
    example = ctx.example_input(1)
    model, report = prune_module(model, example, cfg, info.arch, ctx)
    if cfg.finetune_epochs > 0:
        if not info.has_weights:
            report["finetune"] = {"skipped": "random-init weights: nothing to recover"}
        else:
            report["finetune"] = finetune(model, teacher, cfg, ctx)
    else:
        report["finetune"] = {"skipped": "finetune=0"}
    notes = []
    if ctx.options.get(BUILD_SPEED_CHECK, True):
        batches = (1, int(ctx.options.get("throughput_batch", 16)))
        speed = measure_speedup(teacher.to(ctx.device), model.to(ctx.device), info.input_size, batches, ctx.quick)
        report["speed_check"] = speed
        notes = [n for n in (speed_note(speed),) if n]
    else:  # a sweep times the variant properly right after; at batch 16 this check was most of the build
        report["speed_check"] = {"skipped": "the sweep measures the pruned variant against fp32"}
    report["channels"] = channel_summary(model)
    artifact.module = model
    pruned_info = with_pruned_layers(info, model)
    artifact.save_hook = eager_save_hook(artifact, pruned_info)
    entry = {"config": asdict(cfg), **report}
    if notes:
        entry["notes"] = notes
    artifact.steps.append(entry)
    return artifact


def _fmt_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def build_parser() -> ArgumentParser:
    from optim.cli import add_producer_arguments

    p = ArgumentParser(prog="python -m optim.prune", description="Structured channel pruning plus fine-tuning.")
    add_producer_arguments(p, device=False, calib=False)
    add_options(p, PRUNE_ARGS)
    p.add_argument("--no-eval", action="store_true", help="skip the top-1 comparison on the val split")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from models.train import evaluate
    from optim.cli import producer_run
    from optim.variant import build

    args = build_parser().parse_args(argv)
    cfg = PruneConfig(**values_of(args, PRUNE_ARGS)).validate()
    recipe = step_text("prune", PRUNE_ARGS, asdict(cfg))
    run = producer_run(args, recipe, device="cpu", needs_data=cfg.finetune_epochs > 0 or not args.no_eval)
    loaded, out = run.loaded, run.out
    ctx = run.context(out)
    variant = build(recipe, loaded, ctx)
    entry = variant.manifest["steps"][-1]
    if not args.no_eval and loaded.info.has_weights:
        val = ctx.data.val
        before, after = evaluate(loaded.model, val), evaluate(variant.artifact.module, val)
        variant.manifest["top1"] = {"before": round(before, 2), "after": round(after, 2), "split": "val"}
    variant.save(out)
    macs = f"{_fmt_count(entry['macs_before'])} -> {_fmt_count(entry['macs_after'])}"
    params = f"{_fmt_count(entry['params_before'])} -> {_fmt_count(entry['params_after'])}"
    print(f"{recipe}: {loaded.info.arch}, {entry['layers_pruned']} layers narrower")
    print(f"  MACs   {macs} ({entry['macs_ratio']:.2f}x of the original)")
    print(f"  params {params} ({entry['params_ratio']:.2f}x)")
    if isinstance(entry["speed_check"], dict) and "skipped" not in entry["speed_check"]:
        from models.machine import cpu_info

        print(f"  eager speed on {cpu_info().get('cpu_model') or 'this CPU'}, {run.config.threads} threads:")
    for batch, s in entry["speed_check"].items():
        verdict = "" if s["speedup"] >= NOT_FASTER_BELOW else "  <- not faster"
        print(f"  {batch} eager: {s['reference_ms']:.2f} ms -> {s['pruned_ms']:.2f} ms ({s['speedup']:.2f}x){verdict}")
    if "top1" in variant.manifest:
        t = variant.manifest["top1"]
        print(f"  top-1 (val) {t['before']:.2f}% -> {t['after']:.2f}% ({t['after'] - t['before']:+.2f} points)")
    ft = entry.get("finetune", {})
    if "train_seconds" in ft:
        print(f"  fine-tune {ft['epochs']} epoch(s) on train in {ft['train_seconds']:.0f}s (distill={ft['distill']:g})")
    print(f"saved {out} (loads with models.load({out / 'model.pt'}) or Variant.load({out}))")
    print("  measured speed is a short in-process check; `python -m bench --recipes '" + recipe + "'` measures it")
    return 0
