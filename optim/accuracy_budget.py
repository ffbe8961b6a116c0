"""A producer command's build with an accuracy budget (``python -m optim.quantize`` and ``python -m optim.onnx``):
build, measure top-1 against FP32, fall back, save, report.

Accuracy must not break silently: every variant's top-1 on val is measured against FP32. When it loses more than
``--max-drop`` points, the recipe's last step offers fallbacks (its registry entry: for ``ptq``, another
calibration method, first conv + classifier kept in FP32, then the most sensitive layers by measured per-layer
sensitivity), each an ordinary recipe, tried in order; the report says which one won, or marks the best one
``over budget``. Nothing is written to ``--out`` until a variant is complete, so a failure never destroys an
earlier result.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from data.errors import InputError
from optim.cli import ProducerRun, producer_run, quick_check, quick_check_line, save_atomically, scratch_dir
from optim.context import DATA_BATCH
from optim.registry import REFERENCE


def add_budget_arguments(p) -> None:
    p.add_argument("--max-drop", type=float, default=1.0, help="top-1 budget in points vs FP32 (default 1.0)")


@dataclass
class Candidate:
    recipe: str
    reason: str
    variant: Any = None
    accuracy: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "why": self.reason, **self.accuracy}


def _evaluate(variant, val, reference: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Accuracy (and agreement with ``reference``) at the loader's batch size throughout: its short last batch,
    filled up, compiles nothing new."""
    from optim.evaluate import evaluate_variant

    return evaluate_variant(variant, val, reference, batch_size=getattr(val, "batch_size", None))


def _search(run: ProducerRun, recipe: str, bundle, scratch, max_drop: float):
    """Build ``recipe`` and, while it misses the budget, its fallbacks; returns (reference, winner, tried, seconds)."""
    from optim.recipe import parse
    from optim.variant import build

    options: dict[str, Any] = {"_cache_dir": str(scratch / "cache")}
    plan = parse(recipe).fallbacks()
    # A compiled graph (ptq(x86)) computes what the uncompiled one does: compare uncompiled, compile the winner.
    defer = bool(plan) and parse(recipe).reload_compiles(run.config.device)

    def context(name: str, defer_compile: bool):
        safe = "".join(ch if ch.isalnum() else "_" for ch in name)[:60]
        return run.context(scratch / safe, bundle, {**options, "defer_compile": defer_compile})

    reference = build(REFERENCE, run.loaded, context(REFERENCE, False))
    fp32_acc, fp32_preds = _evaluate(reference, bundle.val)
    candidates, tried, winner = [Candidate(recipe, "requested")], [], None
    start = time.perf_counter()
    while candidates:
        cand = candidates.pop(0)
        cand.variant = build(cand.recipe, run.loaded, context(cand.recipe, defer))  # ParityError: the caller
        acc, _ = _evaluate(cand.variant, bundle.val, fp32_preds)
        drop = fp32_acc["top1"] - acc["top1"]
        cand.accuracy = {"top1": round(acc["top1"], 3), "drop": round(drop, 3), "agreement": round(acc["agreement"], 3)}
        tried.append(cand)
        if winner is None or acc["top1"] > winner.accuracy["top1"]:
            winner = cand
        if drop <= max_drop:
            winner = cand
            break
        if plan and not candidates:
            nxt, why = plan.pop(0)
            print(f"  {cand.recipe}: top-1 drop {drop:.2f} > {max_drop:g} points; trying {nxt} ({why})")
            candidates.append(Candidate(nxt, why))
    if defer and winner.variant.manifest["steps"][-1].get("compiled") is False:
        winner.variant = _compile_winner(winner.variant, run.loaded.info.input_size)
    return reference, fp32_acc, winner, tried, time.perf_counter() - start


def run_with_budget(recipe: str, args: Any, prog: str) -> int:
    """Build ``recipe`` for the command line, enforce the accuracy budget, save the variant, print a report."""
    import data
    from optim.backends.onnx_export import ParityError
    from optim.variant import module_bytes

    if not args.max_drop >= 0:
        raise InputError(f"--max-drop must be >= 0 points, got {args.max_drop}")
    run = producer_run(args, recipe, needs_data=True)
    info, cfg = run.loaded.info, run.config
    if not info.has_weights:
        raise InputError("a random-init model has no accuracy to keep; pass a trained checkpoint")
    loader_cfg = data.LoaderConfig(batch_size=DATA_BATCH, calib_size=cfg.calib_size, seed=cfg.seed)
    bundle = data.build(
        cfg.data_spec,
        info.data_config,
        loader_cfg,
        cfg.data_dir,
        strict_calib_size=args.calib_size is not None,
        skip_bad_images=cfg.skip_bad_images,
    )
    scratch = scratch_dir(run.out)
    try:
        try:
            reference, fp32_acc, winner, tried, search_s = _search(run, recipe, bundle, scratch, args.max_drop)
        except ParityError as exc:  # the export computes something else than the model: a failed check, not bad input
            print(f"error: {exc}", file=sys.stderr)
            return 1
        variant = winner.variant
        example = torch.randn(1, *info.input_size, generator=torch.Generator().manual_seed(cfg.seed))
        _record_accuracy(variant.manifest, winner, tried, fp32_acc, cfg, bundle, args.max_drop, search_s)
        variant.manifest["latency_quick"] = {**quick_check(reference, variant, example), "threads": cfg.threads}
        variant.manifest["size_fp32_mb"] = round(module_bytes(run.loaded.model) / 1e6, 3)
        saved = save_atomically(variant, run.out, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _print_report(prog, variant, info, winner, tried, saved, args.max_drop)
    if not variant.manifest["accuracy"]["within_budget"]:
        # `quantize && deploy` must not ship it: the variant is kept for a look, the exit code says no.
        drop = variant.manifest["accuracy"]["drop"]
        print(
            f"over budget: no candidate kept top-1 within {args.max_drop:g} points; the best, {winner.recipe}, "
            f"loses {drop:.2f} (saved at {saved} for inspection; --max-drop sets the budget)",
            file=sys.stderr,
        )
        return 1
    return 0


def _record_accuracy(manifest, winner, tried, fp32_acc, cfg, bundle, max_drop: float, search_s: float) -> None:
    """What the manifest says about calibration, accuracy against FP32, and the fallbacks tried."""
    from optim.recipe import parse

    calibrates = parse(winner.recipe).calibrates()
    if calibrates is True:
        manifest["calibration"] = {
            "split": "train (seeded subset; val is never used to calibrate)",
            "data_spec": cfg.data_spec,
            "images": len(bundle.calib.dataset),
            "seed": cfg.seed,
        }
    elif calibrates:
        manifest["calibration"] = {"split": "train", "data_spec": cfg.data_spec, "note": calibrates}
    within = winner.accuracy["drop"] <= max_drop
    manifest["accuracy"] = {
        "split": "val",
        "data_spec": cfg.data_spec,
        "val_images": fp32_acc["val_images"],
        "fp32_top1": round(fp32_acc["top1"], 3),
        **{k: winner.accuracy[k] for k in ("top1", "drop", "agreement")},
        "max_drop": max_drop,
        "within_budget": within,
        **({} if within else {"verdict": "over budget"}),
    }
    if len(tried) > 1:
        manifest["fallback"] = {
            "tried": [c.row() for c in tried],
            "winner": winner.recipe,
            "note": "candidates are ranked by val top-1; with a small val split this is optimistic",
            "search_s": round(search_s, 2),
        }


def _compile_winner(variant, input_size) -> Any:
    """Compile the chosen x86 graph (candidates were compared uncompiled: the PT2E graph computes the same)."""
    from optim.backends.pt2e import compile_frozen

    compiled, seconds = compile_frozen(variant.artifact.module, [(1, *input_size)])

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(x)

    variant.predict = predict
    variant.manifest["steps"][-1].update(
        {"compiled": True, "compile": "torch.compile + inductor freezing", "compile_s": round(seconds, 3)}
    )
    variant.manifest["build_s"] = round(variant.manifest.get("build_s", 0) + seconds, 4)
    return variant


def _print_report(prog: str, variant, info, winner: Candidate, tried: list[Candidate], out, max_drop: float) -> None:
    m = variant.manifest
    acc, lat, cal = m["accuracy"], m["latency_quick"], m.get("calibration") or {}
    size = m.get("size_mb") or 0.0
    calibrated = f"; calibration: {cal['images']} train images" if "images" in cal else ""
    print(f"{variant.name}: {info.arch} on {acc['data_spec']} ({prog}{calibrated})")
    ratio = m["size_fp32_mb"] / size if size else float("nan")
    print(f"  size     {m['size_fp32_mb']:.3f} MB -> {size:.3f} MB on disk ({ratio:.2f}x smaller)")
    verdict = "within budget" if acc["within_budget"] else "OVER BUDGET"
    print(
        f"  top-1    {acc['fp32_top1']:.2f}% -> {acc['top1']:.2f}% ({-acc['drop']:+.2f} points, budget {max_drop:g}: "
        f"{verdict}); agreement with FP32 {acc['agreement']:.2f}% on {acc['val_images']} val images"
    )
    print(quick_check_line(lat, lat["threads"]))
    if len(tried) > 1:
        outcome = "won" if acc["within_budget"] else "was best"
        print(f"  fallback: {len(tried)} candidates tried, {winner.recipe} {outcome}")
        for c in tried:
            top1, drop = c.accuracy.get("top1", float("nan")), c.accuracy.get("drop", 0.0)
            print(f"    {c.recipe:<40} top-1 {top1:6.2f}%  drop {drop:+.2f} points")
    for step in m.get("steps", []):
        for key in ("warning", "note"):
            if key in step:
                print(f"  note: {step[key]}")
        export = step.get("export") if isinstance(step.get("export"), dict) else step
        if isinstance(export, dict) and "parity" in export:
            p = export["parity"]
            print(
                f"  ONNX parity vs eager, of the FP32 export before any quantization ({p['images']} "
                f"{p.get('data', 'val')} images): max abs diff "
                f"{p['max_abs_diff']:.2e}, cosine {p['cosine']:.6f}, top-1 agreement {p['agreement']:.2f}%"
            )
            if export.get("warning"):
                print(f"  note: {export['warning']}")
    print(f"saved {out} (manifest.json; load with optim.Variant.load('{out}'))")
