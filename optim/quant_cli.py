"""The CLI shared by ``python -m optim.quantize`` and ``python -m optim.onnx``: build, check accuracy, fall back, save.

Accuracy must not break silently: every variant's top-1 on val is measured against FP32. When a PTQ
variant loses more than ``--max-drop`` points, ordinary recipes are tried in order (another calibration
method, first conv + classifier kept in FP32, then the most sensitive layers by measured per-layer
sensitivity) and the report says which one won, or marks the best one ``over budget``. Nothing is
written to ``--out`` until a variant is complete, so a failure never destroys an earlier result.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.errors import InputError

QUICK_LATENCY_NOTE = "quick in-process check at batch 1; `python -m bench` measures it properly"
SENSITIVE_STEPS = (1, 2, 4, 8)


def add_common_arguments(p) -> None:
    p.add_argument("--calib-size", type=int, default=None, help="calibration images from train (default 512)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset and fine-tuning")
    p.add_argument("--max-drop", type=float, default=1.0, help="top-1 budget in points vs FP32 (default 1.0)")
    p.add_argument("--data", help="data spec (default: the checkpoint's own, e.g. digits)")
    p.add_argument("--data-dir", help="root for timm dataset names such as torch/gtsrb")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the variant runs (default cpu)")
    p.add_argument("--quick", action="store_true", help="short QAT and parity checks (smoke runs)")
    p.add_argument("--out", help="variant directory (default: results/variants/<arch>-<recipe>)")


@dataclass
class Candidate:
    recipe: str
    reason: str
    variant: Any = None
    accuracy: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def row(self) -> dict[str, Any]:
        out = {"recipe": self.recipe, "why": self.reason, **self.accuracy}
        if self.error:
            out["error"] = self.error
        return out


def _check_args(args: Any) -> None:
    if args.calib_size is not None and args.calib_size <= 0:
        raise InputError(f"--calib-size must be positive, got {args.calib_size}")
    if not args.max_drop >= 0:
        raise InputError(f"--max-drop must be >= 0 points, got {args.max_drop}")
    if args.device == "cuda" and not torch.cuda.is_available():
        from models.errors import MissingDependencyError

        raise MissingDependencyError("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)")


def _resolve_checkpoint(ckpt: str | None) -> str:
    if ckpt:
        return ckpt
    from models.default import ensure_default_checkpoint

    return str(ensure_default_checkpoint())


def _out_dir(args: Any, arch: str, recipe: str) -> Path:
    from models.default import results_dir

    if args.out:
        out = Path(args.out)
    else:
        safe = "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in recipe)[:80]
        out = results_dir() / "variants" / f"{arch}-{safe}"
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").is_file())):
        raise InputError(f"--out {out} exists and is not a variant directory; choose another path")
    return out


def _agreement(preds: np.ndarray, reference: np.ndarray) -> float:
    return float((preds == reference).mean() * 100) if reference.size else float("nan")


def _evaluate(variant, val) -> tuple[dict[str, Any], np.ndarray]:
    """Accuracy at the loader's batch size throughout: its short last batch, filled up, compiles nothing new."""
    from bench.accuracy import evaluate_variant

    return evaluate_variant(variant, val, batch_size=getattr(val, "batch_size", None))


def _quick_latency_ms(variant, example: torch.Tensor) -> float:
    from bench.timing import ScenarioConfig, WallTimer, run_timed, summarize

    cfg = ScenarioConfig(
        "latency", 1, warmup_iters=5, warmup_seconds=0.3, min_iters=30, min_seconds=1.0, max_seconds=10
    )
    ready = variant.prepare_input(example)
    samples = run_timed(lambda: variant.predict(ready), cfg, WallTimer())
    return summarize(samples, 1)["p50_ms"]


def fallback_plan(recipe: str) -> list[tuple[str, str]]:
    """(recipe, why) candidates to try, in order, when ``recipe`` (a ptq) misses the budget."""
    from optim.recipe import parse

    parsed = parse(recipe)
    last = parsed.steps[-1]
    if last.name not in ("ptq", "ort-int8"):
        return []
    prefix = "+".join(str(s) for s in parsed.steps[:-1])
    backend = last.args.get("backend") or "ort"
    if backend == "tensorrt":
        return []
    calib = last.args.get("calib") or ("minmax" if backend == "ort" else "histogram")
    others = ("percentile", "entropy", "minmax") if backend == "ort" else ("minmax", "histogram")

    def make(calib_value: str, keep: str | None) -> str:
        parts = [backend] + ([f"calib={calib_value}"] if calib_value != _default_calib(backend) else [])
        if keep:
            parts.append(f"keep={keep}")
        step = f"ptq({','.join(parts)})"
        return f"{prefix}+{step}" if prefix else step

    plan = [(make(c, None), f"calibration method {c} instead of {calib}") for c in others if c != calib]
    plan.append((make(calib, "ends"), "first conv and classifier kept in FP32"))
    for n in SENSITIVE_STEPS:
        plan.append((make(calib, f"ends+{n}"), f"first conv, classifier and the {n} most sensitive layers in FP32"))
    return plan


def _default_calib(backend: str) -> str:
    return "minmax" if backend == "ort" else "histogram"


def run_producer_cli(recipe: str, args: Any, prog: str, fallbacks: bool) -> int:
    """Build ``recipe`` for the CLI, enforce the accuracy budget, save the variant, print a short report."""
    import data
    import models
    from bench.fingerprint import default_threads
    from optim.artifact import BuildContext
    from optim.onnx_export import ParityError
    from optim.recipe import parse
    from optim.variant import build, module_bytes

    _check_args(args)
    parse(recipe)  # bad recipe -> one line before any work
    loaded = models.load(_resolve_checkpoint(args.ckpt))
    info = loaded.info
    if not info.has_weights:
        raise InputError("a random-init model has no accuracy to keep; pass a trained checkpoint")
    spec = args.data or info.data_spec
    if not spec:
        raise InputError("this checkpoint records no data spec; pass --data (digits, a folder, torch/<name>)")
    out = _out_dir(args, info.arch, recipe)
    threads = default_threads()
    torch.set_num_threads(threads)
    calib_size = args.calib_size or 512
    loader_cfg = data.LoaderConfig(batch_size=32, calib_size=calib_size, seed=args.seed)
    bundle = data.build(
        spec, info.data_config, loader_cfg, args.data_dir, strict_calib_size=args.calib_size is not None
    )
    if bundle.num_classes != info.num_classes:
        raise InputError(f"data {spec!r} has {bundle.num_classes} classes but the model has {info.num_classes}")
    calib_images = len(bundle.calib.dataset)

    scratch = Path(tempfile.mkdtemp(prefix=".optbench-", dir=out.parent if out.parent.exists() else None))
    options: dict[str, Any] = {"progress": True, "_cache_dir": str(scratch / "cache")}

    def context(name: str, defer_compile: bool) -> BuildContext:
        safe = "".join(ch if ch.isalnum() else "_" for ch in name)[:60]
        options["defer_compile"] = defer_compile
        return BuildContext(
            loaded=loaded,
            device=args.device,
            workdir=scratch / safe,
            threads=threads,
            seed=args.seed,
            quick=args.quick,
            calib_size=calib_size,
            options=options,
            _data=bundle,
        )

    try:
        reference = build("fp32", loaded, context("fp32", False))
        fp32_acc, fp32_preds = _evaluate(reference, bundle.val)
        search = fallbacks and "x86" in recipe  # compile only the winner: accuracy of the PT2E graph is the same
        candidates = [Candidate(recipe, "requested")]
        plan = fallback_plan(recipe) if fallbacks else []
        start = time.perf_counter()
        winner = None
        tried: list[Candidate] = []
        while candidates:
            cand = candidates.pop(0)
            try:
                cand.variant = build(cand.recipe, loaded, context(cand.recipe, search))
            except ParityError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            acc, preds = _evaluate(cand.variant, bundle.val)
            drop = fp32_acc["top1"] - acc["top1"]
            cand.accuracy = {
                "top1": round(acc["top1"], 3),
                "drop": round(drop, 3),
                "agreement": round(_agreement(preds, fp32_preds), 3),
            }
            tried.append(cand)
            if winner is None or acc["top1"] > winner.accuracy["top1"]:
                winner = cand
            if drop <= args.max_drop:
                winner = cand
                break
            if plan and not candidates:
                nxt, why = plan.pop(0)
                print(f"  {cand.recipe}: top-1 drop {drop:.2f} > {args.max_drop:g} points; trying {nxt} ({why})")
                candidates.append(Candidate(nxt, why))
        search_s = time.perf_counter() - start
        variant = winner.variant
        if search and variant.manifest["steps"] and variant.manifest["steps"][-1].get("compiled") is False:
            variant = _compile_winner(variant, info.input_size)
        within = winner.accuracy["drop"] <= args.max_drop
        example = torch.randn(1, *info.input_size, generator=torch.Generator().manual_seed(args.seed))
        fp32_ms = _quick_latency_ms(reference, example)
        variant_ms = _quick_latency_ms(variant, example)
        manifest = variant.manifest
        if any(name in recipe for name in ("ptq", "ort-int8")):
            manifest["calibration"] = {
                "split": "train (seeded subset; val is never used to calibrate)",
                "data_spec": spec,
                "images": calib_images,
                "seed": args.seed,
            }
        elif "qat" in recipe:
            manifest["calibration"] = {
                "split": "train",
                "data_spec": spec,
                "note": "QAT: ranges learned in fine-tuning",
            }
        manifest["accuracy"] = {
            "split": "val",
            "data_spec": spec,
            "val_images": fp32_acc["val_images"],
            "fp32_top1": round(fp32_acc["top1"], 3),
            "top1": winner.accuracy["top1"],
            "drop": winner.accuracy["drop"],
            "agreement": winner.accuracy["agreement"],
            "max_drop": args.max_drop,
            "within_budget": within,
        }
        if not within:
            manifest["accuracy"]["verdict"] = "over budget"
        if len(tried) > 1:
            manifest["fallback"] = {
                "tried": [c.row() for c in tried],
                "winner": winner.recipe,
                "note": "candidates are ranked by val top-1; with a small val split this is optimistic",
                "search_s": round(search_s, 2),
            }
        manifest["latency_quick"] = {
            "fp32_p50_ms": round(fp32_ms, 4),
            "variant_p50_ms": round(variant_ms, 4),
            "speedup": round(fp32_ms / variant_ms, 3) if variant_ms > 0 else None,
            "threads": threads,
            "note": QUICK_LATENCY_NOTE,
        }
        manifest["size_fp32_mb"] = round(module_bytes(loaded.model) / 1e6, 3)
        saved = _save_atomically(variant, out, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _print_report(prog, variant, info, winner, tried, saved, args.max_drop)
    return 0


def _compile_winner(variant, input_size) -> Any:
    """Compile the chosen x86 graph (candidates were compared uncompiled: the PT2E graph computes the same)."""
    from optim.quant_pt2e import compile_frozen

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


def _save_atomically(variant, out: Path, scratch: Path) -> Path:
    staging = scratch / "staging"
    variant.save(staging)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        old = scratch / "previous"
        out.rename(old)
    shutil.move(str(staging), str(out))
    return out


def _print_report(prog: str, variant, info, winner: Candidate, tried: list[Candidate], out: Path, max_drop: float):
    m = variant.manifest
    acc, lat, cal = m["accuracy"], m["latency_quick"], m.get("calibration") or {}
    size = m.get("size_mb") or 0.0
    calibrated = f"; calibration: {cal['images']} train images" if "images" in cal else ""
    print(f"{variant.name}: {info.arch} on {m['accuracy']['data_spec']} ({prog}{calibrated})")
    ratio = m["size_fp32_mb"] / size if size else float("nan")
    print(f"  size     {m['size_fp32_mb']:.3f} MB -> {size:.3f} MB on disk ({ratio:.2f}x smaller)")
    verdict = "within budget" if acc["within_budget"] else "OVER BUDGET"
    print(
        f"  top-1    {acc['fp32_top1']:.2f}% -> {acc['top1']:.2f}% ({-acc['drop']:+.2f} points, budget {max_drop:g}: "
        f"{verdict}); agreement with FP32 {acc['agreement']:.2f}% on {acc['val_images']} val images"
    )
    print(
        f"  latency  {lat['fp32_p50_ms']:.3f} ms -> {lat['variant_p50_ms']:.3f} ms p50 at batch 1 "
        f"({lat['speedup']:.2f}x vs eager FP32, {lat['threads']} threads; {QUICK_LATENCY_NOTE})"
    )
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
                f"  ONNX parity vs eager ({p['images']} {p.get('data', 'val')} images): max abs diff "
                f"{p['max_abs_diff']:.2e}, cosine {p['cosine']:.6f}, top-1 agreement {p['agreement']:.2f}%"
            )
            if export.get("warning"):
                print(f"  note: {export['warning']}")
    print(f"saved {out} (manifest.json; load with optim.Variant.load('{out}'))")
