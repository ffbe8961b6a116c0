"""Structured channel pruning with torch-pruning: rank channels, remove them for real, repair with fine-tuning.

Channels are removed (layers get narrower), so the pruned model is a smaller dense model that any backend runs
faster, unlike unstructured sparsity. The classifier is never pruned and widths are rounded to multiples of 8.
:mod:`optim.prune` registers the recipe step and the command; this module only does the work.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from data.errors import InputError, require
from models.attention import attention_layers, sync_attention
from optim.artifact import BuildContext

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


def _import_torch_pruning():
    return require("torch_pruning", "pip install 'torch-pruning>=1.6,<1.7'")


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


PRUNER_ERRORS = (RuntimeError, ValueError, KeyError, IndexError, TypeError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


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
    except PRUNER_ERRORS as exc:
        failed = list(stack)
        message = _first_line(exc)
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


def _pruner(tp, model: nn.Module, example: torch.Tensor, cfg: PruneConfig, arch: str, attention: list[nn.Module]):
    """torch-pruning's pruner for ``model``: the classifier kept, attention blocks cut per head."""
    heads = {"num_heads": {a.qkv: a.num_heads for a in attention}, "prune_head_dims": True} if attention else {}
    try:
        with warnings.catch_warnings():
            # cls/position tokens are found and cut along their last dimension, which is the embedding width
            warnings.filterwarnings("ignore", message=".*[Uu]nwrapped parameters.*")
            return tp.pruner.BasePruner(
                model,
                example,
                importance=_importance(tp, cfg.importance),
                pruning_ratio=cfg.ratio,
                iterative_steps=cfg.steps,
                ignored_layers=[classifier_of(model)],
                round_to=cfg.round_to,
                **heads,
            )
    except PRUNER_ERRORS as exc:
        first = _first_line(exc)
        raise InputError(f"torch-pruning cannot trace {arch} to find prunable channel groups ({first})") from None


def prune_module(model: nn.Module, example: torch.Tensor, cfg: PruneConfig, arch: str, ctx: BuildContext | None = None):
    """Prune ``model`` in place (no fine-tune); returns (model, report). Raises InputError if nothing was removed.

    Transformers keep their head count and lose the same share of every head's width (torch-pruning's
    ``prune_head_dims``); the embedding width shrinks with it, class and position tokens included.
    """
    tp = _import_torch_pruning()
    model.eval()
    widths = _widths(model)
    macs0, params0 = count_macs_params(model, example)
    attention = attention_layers(model)
    pruner = _pruner(tp, model, example, cfg, arch, attention)
    for step in range(cfg.steps):
        if cfg.importance == "taylor":
            if ctx is None:
                raise InputError("importance=taylor needs training data for gradients; pass --data")
            _taylor_gradients(model, ctx)
        try:
            pruner.step()
        except PRUNER_ERRORS as exc:
            raise InputError(
                f"torch-pruning cannot prune {arch}: its channel groups do not fit the layers they were traced from "
                f"({type(exc).__name__}: {_first_line(exc)}); use another recipe"
            ) from None
        sync_attention(attention)
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
    the number to trust. One short run in one process carries that process's offset and the machine's drift, so
    small ratios are noise.
    """
    from models.timers import WallTimer, alternating_p50, cuda_synchronize

    device = next(pruned.parameters()).device
    timer = WallTimer(cuda_synchronize if device.type == "cuda" else None)
    out: dict[str, Any] = {}
    for batch in batches:
        x = torch.randn(batch, *input_size, device=device, generator=torch.Generator().manual_seed(0))
        for module in (reference, pruned):
            module.eval()
        with torch.inference_mode():
            calls = {"reference": lambda x=x: reference(x), "pruned": lambda x=x: pruned(x)}
            times = {k: v * 1e3 for k, v in alternating_p50(calls, timer, blocks=4, quick=quick).items()}
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
    from optim.backends.batchnorm import recalibrate_batchnorm

    bn = recalibrate_batchnorm(model, bundle.train, ctx.device)
    model.eval()
    return {
        "bn_recalibrated": bn,
        "epochs": cfg.finetune_epochs,
        "lr": cfg.lr,
        "distill": cfg.distill,
        "steps_per_epoch_cap": train_cfg.max_steps_per_epoch,
        "train_seconds": round(result["train_seconds"], 2),
        "loss": [round(h["loss"], 4) for h in result["history"]],
        "split": "train",
    }
