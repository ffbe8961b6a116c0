"""Structured channel pruning with torch-pruning, then a short fine-tune: ``prune(0.5)`` / ``python -m optim.prune``.

Channels are removed for real (layers get narrower), so the pruned model is a smaller dense model that any
backend runs faster, unlike unstructured sparsity. The classifier is never pruned and widths are rounded to
multiples of 8 (SIMD and tensor-core friendly). MACs and parameters before/after come from torch-pruning's
counter, and the speedup is *measured*: fewer MACs does not always mean faster (Torch-Pruning issues 149, 382),
and the manifest says so when it is not.

The pruned variant is saved as our checkpoint plus per-layer shapes (:mod:`models.pruned`), never as a pickled
module, so ``models.load`` rebuilds it with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.errors import ArgumentParser, InputError, MissingDependencyError, run_cli
from optim.artifact import Artifact, BuildContext
from optim.registry import MODULE, STEPS, register_step

if __name__ == "__main__":
    # `python -m optim.prune` runs this file as __main__; run the importable module instead so the recipe step
    # registers exactly once (load_producers imports optim.prune again).
    from optim.prune import main as _main

    run_cli(_main)

IMPORTANCES = ("magnitude", "taylor", "bn-scale")
ROUND_TO = 8  # channel counts stay multiples of 8: SIMD widths and tensor cores want them
DEFAULT_FINETUNE_EPOCHS = 2
FINETUNE_LR = 1e-3  # a fraction of the from-scratch rate: the weights are already good, only the cut is repaired
QUICK_STEPS_PER_EPOCH = 20  # --quick / ctx.quick caps each fine-tune epoch (a smoke run, not for decisions)
TAYLOR_BATCHES = 4  # train batches whose loss gradients rank channels for importance=taylor
NOT_FASTER_BELOW = 1.05  # measured speedups under this are reported as "not faster"


@dataclass(frozen=True)
class PruneConfig:
    """What to prune and how to recover; plain values, so it serializes into the manifest."""

    ratio: float
    importance: str = "magnitude"
    steps: int = 1
    finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS
    distill: float = 0.0
    round_to: int = ROUND_TO
    lr: float = FINETUNE_LR

    def validate(self) -> PruneConfig:
        if not 0.0 < self.ratio < 1.0:
            raise InputError(f"pruning ratio must be in (0, 1) (the fraction of channels removed), got {self.ratio:g}")
        if self.importance not in IMPORTANCES:
            raise InputError(f"unknown importance {self.importance!r}; choose one of: {', '.join(IMPORTANCES)}")
        if self.steps < 1:
            raise InputError(f"steps must be >= 1 (iterative pruning steps), got {self.steps}")
        if self.finetune_epochs < 0:
            raise InputError(f"finetune epochs must be >= 0, got {self.finetune_epochs}")
        if not 0.0 <= self.distill <= 1.0:
            raise InputError(f"distill must be in [0, 1] (weight of the teacher's KL term), got {self.distill:g}")
        return self


def _number(text: str, kind: type, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise InputError(f"{what} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def parse_prune_args(args: Sequence[str]) -> dict[str, Any]:
    """``prune(0.5)``, ``prune(0.5,importance=taylor,steps=3,finetune=2,distill=0.5)``."""
    if not args:
        raise InputError("prune needs a ratio, e.g. prune(0.5)")
    values: dict[str, Any] = {}
    for index, arg in enumerate(args):
        key, sep, value = arg.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            if index != 0:
                raise InputError(f"only the ratio may be positional; write key=value for {arg!r}")
            key, value = "ratio", arg
        if key in values:
            raise InputError(f"{key} given twice")
        if key == "ratio":
            values["ratio"] = _number(value, float, "ratio")
        elif key == "importance":
            values["importance"] = value
        elif key == "steps":
            values["steps"] = _number(value, int, "steps")
        elif key in ("finetune", "finetune_epochs", "finetune-epochs"):
            values["finetune_epochs"] = _number(value, int, "finetune")
        elif key == "distill":
            values["distill"] = _number(value, float, "distill")
        else:
            raise InputError(f"unknown prune argument {key!r}; known: ratio, importance, steps, finetune, distill")
    if "ratio" not in values:
        raise InputError("prune needs a ratio, e.g. prune(0.5)")
    PruneConfig(**values).validate()
    values["step_text"] = f"prune({','.join(args)})"  # how the recipe spelled it: the key of this step's manifest entry
    return values


def recipe_step(cfg: PruneConfig) -> str:
    """The recipe text for ``cfg``, naming only what differs from the defaults (the variant's name)."""
    default = PruneConfig(ratio=cfg.ratio)
    parts = [f"{cfg.ratio:g}"]
    if cfg.importance != default.importance:
        parts.append(f"importance={cfg.importance}")
    if cfg.steps != default.steps:
        parts.append(f"steps={cfg.steps}")
    if cfg.finetune_epochs != default.finetune_epochs:
        parts.append(f"finetune={cfg.finetune_epochs}")
    if cfg.distill:
        parts.append(f"distill={cfg.distill:g}")
    return f"prune({','.join(parts)})"


def _import_torch_pruning():
    try:
        import torch_pruning as tp
    except ImportError:
        raise MissingDependencyError("pruning needs torch-pruning: pip install 'torch-pruning>=1.6,<1.7'") from None
    return tp


def _importance(tp, name: str):
    if name == "magnitude":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.TaylorImportance()
    return tp.importance.BNScaleImportance()


def classifier_of(model: nn.Module) -> nn.Module:
    """The final classifier (never pruned: its width is the class count)."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(f"cannot find the classifier of {type(model).__name__} (no get_classifier() and no Linear)")
    return linears[-1]


def count_macs_params(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """MACs and parameters by torch-pruning's counter (one forward on ``example``)."""
    tp = _import_torch_pruning()
    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def _run_named(model: nn.Module, example: torch.Tensor, arch: str, when: str) -> None:
    """Forward once; if it fails, raise an InputError naming the innermost layer that was running."""
    names = {module: name for name, module in model.named_modules()}
    stack: list[str] = []
    failed: list[str] = []

    def pre(module, _inputs):
        stack.append(names.get(module, type(module).__name__))

    def post(_module, _inputs, _output):
        if stack:
            stack.pop()

    handles = [m.register_forward_pre_hook(pre) for m in model.modules()]
    handles += [m.register_forward_hook(post) for m in model.modules()]
    try:
        with torch.no_grad():
            model(example)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        failed = list(stack)
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        layer = failed[-1] if failed else "<model>"
        block = next((n for n in reversed(failed[:-1]) if n), None)
        module = dict(model.named_modules()).get(layer)
        kind = type(module).__name__ if module is not None else "?"
        where = f"layer {layer!r} ({kind}" + (f", in block {block!r})" if block and block != layer else ")")
        raise InputError(
            f"torch-pruning cannot prune {arch}: {where} fails {when} ({message}); this layer's structure is not "
            "supported by the pruner (e.g. attention that reshapes to a fixed head count); use another recipe"
        ) from None
    finally:
        for handle in handles:
            handle.remove()


def _removed_channels(before: dict[str, tuple[int, int]], model: nn.Module) -> dict[str, list[int]]:
    """Layers whose output width shrank: name -> [before, after]."""
    out = {}
    for name, module in model.named_modules():
        width = _out_width(module)
        if name in before and width is not None and width < before[name][0]:
            out[name] = [before[name][0], width]
    return out


def _out_width(module: nn.Module) -> int | None:
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        return int(module.out_channels)
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    return None


def _widths(model: nn.Module) -> dict[str, tuple[int, int]]:
    return {n: (w, 0) for n, m in model.named_modules() if (w := _out_width(m)) is not None}


def _taylor_gradients(model: nn.Module, ctx: BuildContext) -> None:
    """Accumulate loss gradients on a few train batches (never val): Taylor importance reads weight * grad."""
    model.zero_grad(set_to_none=True)
    model.train()
    criterion = nn.CrossEntropyLoss()
    for index, (images, targets) in enumerate(ctx.data.train):
        if index >= TAYLOR_BATCHES:
            break
        criterion(model(images), targets).backward()
    model.eval()


def prune_module(model: nn.Module, example: torch.Tensor, cfg: PruneConfig, arch: str, ctx: BuildContext | None = None):
    """Prune ``model`` in place (no fine-tune); returns (model, report). Raises InputError if nothing was removed."""
    tp = _import_torch_pruning()
    model.eval()
    widths = _widths(model)
    macs0, params0 = count_macs_params(model, example)
    head = classifier_of(model)
    try:
        pruner = tp.pruner.BasePruner(
            model,
            example,
            importance=_importance(tp, cfg.importance),
            pruning_ratio=cfg.ratio,
            iterative_steps=cfg.steps,
            ignored_layers=[head],
            round_to=cfg.round_to,
        )
    except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"torch-pruning cannot trace {arch} to find prunable channel groups ({first})") from None
    for step in range(cfg.steps):
        if cfg.importance == "taylor":
            if ctx is None:
                raise InputError("importance=taylor needs training data for gradients; pass --data")
            _taylor_gradients(model, ctx)
        pruner.step()
        model.zero_grad(set_to_none=True)
        _run_named(model, example, arch, f"after pruning step {step + 1}/{cfg.steps}")
    removed = _removed_channels(widths, model)
    macs1, params1 = count_macs_params(model, example)
    if not removed or params1 >= params0:
        raise InputError(
            f"pruning {arch} at ratio {cfg.ratio:g} removed no channels (importance={cfg.importance}); the pruner "
            "found no prunable layer groups (all ignored or unsupported), so the variant would be a silent no-op"
        )
    report = {
        "macs_before": macs0,
        "macs_after": macs1,
        "params_before": params0,
        "params_after": params1,
        "macs_ratio": round(macs1 / macs0, 4) if macs0 else None,
        "params_ratio": round(params1 / params0, 4) if params0 else None,
        "layers_pruned": len(removed),
        "widths_sample": dict(list(removed.items())[:8]),
    }
    return model, report


def measure_speedup(
    reference: nn.Module, pruned: nn.Module, input_size: Sequence[int], batches: Sequence[int], quick: bool
) -> dict[str, Any]:
    """A short wall-clock comparison in this process (eager FP32, CPU or the module's device).

    Only a sanity check for the manifest: the sweep's own measurement (separate processes, longer runs) is
    the number to trust. Processes vary by about +-13% here, so small ratios are noise.
    """
    from bench.timing import ScenarioConfig, WallTimer, cuda_synchronize, run_timed

    device = next(pruned.parameters()).device
    timer = WallTimer(cuda_synchronize if device.type == "cuda" else None)
    out: dict[str, Any] = {}
    for batch in batches:
        cfg = ScenarioConfig(
            "prune-check",
            batch,
            warmup_iters=2,
            warmup_seconds=0.1,
            min_iters=3 if quick else 5,
            min_seconds=0.2 if quick else 0.5,
            max_seconds=5 if quick else 15,
        )
        x = torch.randn(batch, *input_size, device=device, generator=torch.Generator().manual_seed(0))
        times = {}
        for label, module in (("reference", reference), ("pruned", pruned)):
            module.eval()
            with torch.inference_mode():
                samples = run_timed(lambda m=module, x=x: m(x), cfg, timer)
            times[label] = sorted(samples)[len(samples) // 2] * 1e3
        speedup = times["reference"] / times["pruned"] if times["pruned"] > 0 else float("nan")
        out[f"b{batch}"] = {
            "reference_ms": round(times["reference"], 3),
            "pruned_ms": round(times["pruned"], 3),
            "speedup": round(speedup, 3),
        }
    return out


def speed_note(speed: dict[str, Any]) -> str | None:
    slow = [f"{k}: {v['speedup']:.2f}x" for k, v in speed.items() if v["speedup"] < NOT_FASTER_BELOW]
    if not slow:
        return None
    return (
        "pruned but not faster in the build's quick check (" + ", ".join(slow) + "); fewer MACs do not always "
        "mean less time (small layers are bound by memory and overhead). See the measured rows."
    )


def finetune(model: nn.Module, teacher: nn.Module | None, cfg: PruneConfig, ctx: BuildContext) -> dict[str, Any]:
    """Recover accuracy on the train split with the shared loop (optionally distilling from the unpruned model)."""
    from models.train import TrainConfig, train

    bundle = ctx.data
    train_cfg = TrainConfig(
        epochs=cfg.finetune_epochs,
        lr=cfg.lr,
        seed=ctx.seed,
        distill_alpha=cfg.distill,
        max_steps_per_epoch=QUICK_STEPS_PER_EPOCH if ctx.quick else None,
        progress=bool(ctx.options.get("progress", False)),
    )
    for param in model.parameters():
        param.requires_grad_(True)
    result = train(
        model,
        bundle.train,
        None,
        train_cfg,
        teacher=teacher if cfg.distill > 0 else None,
        device=ctx.device,
        desc="fine-tune",
    )
    model.eval()
    return {
        "epochs": cfg.finetune_epochs,
        "lr": cfg.lr,
        "distill": cfg.distill,
        "steps_per_epoch_cap": train_cfg.max_steps_per_epoch,
        "train_seconds": round(result["train_seconds"], 2),
        "loss": [round(h["loss"], 4) for h in result["history"]],
        "split": "train",
    }


def _chain_defaults() -> list[str]:
    """``prune(0.5)+ort-int8`` joins the default sweep only if the quantize producer registered ``ort-int8``."""
    try:
        importlib.import_module("optim.quantize")
    except ModuleNotFoundError as exc:
        if exc.name != "optim.quantize":
            raise
    return ["prune(0.5)+ort-int8"] if "ort-int8" in STEPS else []


USAGE = "prune(RATIO[,importance=magnitude|taylor|bn-scale][,steps=N][,finetune=EPOCHS][,distill=ALPHA])"


@register_step(
    "prune",
    accepts=[MODULE],
    produces=MODULE,
    parse_args=parse_prune_args,
    usage=USAGE,
    description="structured channel pruning (torch-pruning, round_to=8, classifier kept), then fine-tune on train",
    default_recipes={"cpu": ["prune(0.3)", "prune(0.5)", *_chain_defaults()], "cuda": ["prune(0.3)", "prune(0.5)"]},
)
def prune_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """Prune the module, fine-tune it, and record MACs/params before and after plus a measured speedup."""
    from models.pruned import channel_summary, with_pruned_layers
    from optim.eager import eager_save_hook

    step_text = args.pop("step_text", None) or recipe_step(PruneConfig(**args))
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
    batches = (1, int(ctx.options.get("throughput_batch", 16)))
    speed = measure_speedup(teacher.to(ctx.device), model.to(ctx.device), info.input_size, batches, ctx.quick)
    report["speed_check"] = speed
    report["channels"] = channel_summary(model)
    notes = [n for n in (speed_note(speed),) if n]
    artifact.module = model
    pruned_info = with_pruned_layers(info, model)
    artifact.save_hook = eager_save_hook(artifact, pruned_info)
    entry = {"step": step_text, "config": asdict(cfg), **report}
    if notes:
        entry["notes"] = notes
    artifact.steps.append(entry)
    return artifact


def cli_context(loaded, args: Any, workdir: Path, device: str = "cpu") -> BuildContext:
    """A build context for a producer CLI: the checkpoint's own data spec unless ``--data`` overrides it."""
    import data
    from bench.fingerprint import default_threads

    spec = getattr(args, "data", None) or loaded.info.data_spec
    loader_cfg = data.LoaderConfig(batch_size=32, calib_size=getattr(args, "calib_size", 512), seed=args.seed)

    def data_factory():
        if not spec:
            raise InputError("this checkpoint records no data spec; pass --data (digits, a folder, torch/<name>)")
        return data.build(spec, loaded.info.data_config, loader_cfg, getattr(args, "data_dir", None))

    threads = default_threads()
    torch.set_num_threads(threads)
    return BuildContext(
        loaded=loaded,
        device=device,
        workdir=workdir,
        threads=threads,
        seed=args.seed,
        quick=args.quick,
        calib_size=getattr(args, "calib_size", 512),
        data_factory=data_factory,
        options={"progress": True},
    )


def resolve_checkpoint(ckpt: str | None) -> str:
    """The user's checkpoint, or the embedded default (trained once and cached)."""
    if ckpt:
        return ckpt
    from models.default import ensure_default_checkpoint

    return str(ensure_default_checkpoint())


def default_out_dir(recipe: str) -> Path:
    from models.default import results_dir

    safe = "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in recipe)[:80]
    return results_dir() / "variants" / safe


def _fmt_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m optim.prune", description="Structured channel pruning plus fine-tuning.")
    p.add_argument("ckpt", nargs="?", help="checkpoint (default: the embedded digits model)")
    p.add_argument("--ratio", type=float, required=True, help="fraction of channels to remove, in (0, 1)")
    p.add_argument("--importance", default="magnitude", help="magnitude (default) | taylor | bn-scale")
    p.add_argument("--steps", type=int, default=1, help="iterative pruning steps to reach the ratio (default 1)")
    p.add_argument("--finetune-epochs", type=int, default=DEFAULT_FINETUNE_EPOCHS, help="epochs on the train split")
    p.add_argument("--distill", type=float, default=0.0, help="weight of distillation from the unpruned model, [0,1]")
    p.add_argument("--data", help="data spec for fine-tuning and top-1 (default: the checkpoint's)")
    p.add_argument("--data-dir", help="root for timm dataset names")
    p.add_argument("--quick", action="store_true", help=f"cap fine-tune epochs at {QUICK_STEPS_PER_EPOCH} steps")
    p.add_argument("--no-eval", action="store_true", help="skip the top-1 comparison on the val split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="variant directory (default: results/variants/<recipe>)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import models
    from models.train import evaluate
    from optim.variant import build

    args = build_parser().parse_args(argv)
    cfg = PruneConfig(
        ratio=args.ratio,
        importance=args.importance,
        steps=args.steps,
        finetune_epochs=args.finetune_epochs,
        distill=args.distill,
    ).validate()
    recipe = recipe_step(cfg)
    loaded = models.load(resolve_checkpoint(args.ckpt))
    out = Path(args.out) if args.out else default_out_dir(recipe)
    ctx = cli_context(loaded, args, out)
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
