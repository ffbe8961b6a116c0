"""The training loop shared by ``python -m models.train``, QAT fine-tuning and pruning fine-tuning.

``python -m models.train --model resnet18 --data digits --epochs 8 --out ckpt.pt`` trains any timm
architecture from scratch (no pretrained download) and saves a checkpoint that loads with ``weights_only=True``.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from data.errors import ArgumentParser, InputError, run_cli
from data.loaders import DIGITS

DIGITS_IMG_SIZE = 32  # digits are 8x8: larger inputs only add cost, so train them at 32 px unless asked otherwise


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    lr: float = 3e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    seed: int = 0
    distill_alpha: float = 0.0  # weight of the KL term to a teacher (pruning fine-tune), 0 = plain cross-entropy
    distill_temperature: float = 4.0
    max_steps_per_epoch: int | None = None  # caps an epoch (tests, quick QAT)
    progress: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    teacher: nn.Module | None = None,
    cfg: TrainConfig | None = None,
) -> float:
    """One optimizer step; named so profilers (cProfile, line_profiler) can point at it."""
    optimizer.zero_grad(set_to_none=True)
    logits = model(images)
    loss = criterion(logits, targets)
    if teacher is not None and cfg is not None and cfg.distill_alpha > 0:
        t = cfg.distill_temperature
        with torch.no_grad():
            teacher_logits = teacher(images)
        kd = nn.functional.kl_div(
            nn.functional.log_softmax(logits / t, dim=1),
            nn.functional.softmax(teacher_logits / t, dim=1),
            reduction="batchmean",
        ) * (t * t)
        loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy in percent."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for images, targets in loader:
        logits = model(images.to(device))
        correct += int((logits.argmax(1).cpu() == targets).sum())
        total += int(targets.numel())
    model.train(was_training)
    return 100.0 * correct / max(total, 1)


def _optimizer(model: nn.Module, cfg: TrainConfig, total_steps: int):
    """AdamW with a linear warm-up over the first 5% of steps, then a cosine decay to zero."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, total_steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total_steps - warmup + 1)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    cfg: TrainConfig,
    teacher: nn.Module | None = None,
    device: str | torch.device = "cpu",
    desc: str = "train",
) -> dict[str, Any]:
    """Train ``model`` in place with AdamW and a cosine schedule; returns per-epoch history and final top-1."""
    from tqdm import tqdm

    seed_everything(cfg.seed)
    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
    steps_per_epoch = len(train_loader)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    optimizer, schedule = _optimizer(model, cfg, total_steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        losses = []
        bar = tqdm(
            train_loader,
            total=steps_per_epoch,
            desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
            disable=not cfg.progress or not sys.stderr.isatty(),  # a log file gets the epoch lines only
            leave=False,
            file=sys.stderr,
        )
        for step, (images, targets) in enumerate(bar):
            if step >= steps_per_epoch:
                break
            loss = train_step(model, images.to(device), targets.to(device), optimizer, criterion, teacher, cfg)
            schedule.step()
            losses.append(loss)
            bar.set_postfix(loss=f"{loss:.3f}")
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan")}
        if val_loader is not None:
            row["val_top1"] = evaluate(model, val_loader, device)
        history.append(row)
        if cfg.progress:
            shown = f", val top-1 {row['val_top1']:.2f}%" if "val_top1" in row else ""
            print(f"{desc} epoch {epoch + 1}/{cfg.epochs}: loss {row['loss']:.4f}{shown}", file=sys.stderr)
    model.eval()
    return {
        "history": history,
        "val_top1": history[-1].get("val_top1") if history else None,
        "train_seconds": time.perf_counter() - start,
        "epochs": cfg.epochs,
        "lr": cfg.lr,
        "seed": cfg.seed,
    }


def default_img_size(data_spec: str) -> int | None:
    return DIGITS_IMG_SIZE if data_spec == DIGITS else None


def train_checkpoint(
    arch: str,
    data_spec: str,
    out: str,
    cfg: TrainConfig,
    img_size: int | None = None,
    batch_size: int = 32,
    data_dir: str | None = None,
    download: bool = False,
) -> dict[str, Any]:
    """Train ``arch`` from scratch on ``data_spec`` and save our checkpoint to ``out``; returns the metrics."""
    import data
    from models.checkpoint import ModelInfo, create_model, resolve_data_config, save
    from models.input_size import check_input_size

    seed_everything(cfg.seed)
    probe = create_model(arch, 10)
    check_input_size(probe.eval(), arch, img_size)
    img_size = img_size or default_img_size(data_spec)
    data_config = resolve_data_config(probe, img_size)
    if data_spec == DIGITS:
        data_config["crop_pct"] = 1.0  # the digit fills the frame; a center crop would cut strokes off
    bundle = data.build(
        data_spec, data_config, data.LoaderConfig(batch_size=batch_size, seed=cfg.seed), data_dir, download
    )
    model = create_model(arch, bundle.num_classes)
    metrics = train(model, bundle.train, bundle.val, cfg, desc=arch)
    info = ModelInfo(
        arch=arch,
        num_classes=bundle.num_classes,
        data_config=data_config,
        class_names=bundle.class_names,
        data_spec=data_spec,
        source_format="optbench",
    )
    save(out, model, info, metrics=metrics)
    return metrics


def _check_out(out: Path, force: bool) -> None:
    """A checkpoint path that can be written, and no file of the user's replaced without --force."""
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; name the checkpoint file (e.g. {out / 'model.pt'})")
    if out.exists() and not force:
        raise InputError(f"--out {out} exists; pass --force to replace it")
    folder = out.absolute().parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InputError(f"--out {out}: {folder} cannot be created or written")


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m models.train", description="Train a timm classifier from scratch.")
    parser.add_argument("--model", required=True, help="timm architecture name, e.g. resnet18")
    parser.add_argument("--data", default=DIGITS, help="digits | ImageFolder dir with train/ val/ | torch/<name>")
    parser.add_argument("--data-dir", default=None, help="root for timm dataset names")
    parser.add_argument("--download", action="store_true", help="allow timm/torchvision to download the dataset")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=None, help="input resolution (digits default: 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="where to write the checkpoint (.pt)")
    parser.add_argument("--force", action="store_true", help="replace --out when it exists")
    args = parser.parse_args(argv)
    if args.epochs <= 0:
        raise InputError(f"--epochs must be positive, got {args.epochs}")
    if args.batch_size <= 0:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    if not 0 < args.lr < math.inf:
        raise InputError(f"--lr must be a positive number, got {args.lr:g}")
    if not 0 <= args.seed < 2**32:
        raise InputError(f"--seed must be in [0, 2**32), got {args.seed}")
    _check_out(Path(args.out), args.force)  # before training, not after it
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed)
    metrics = train_checkpoint(
        args.model, args.data, args.out, cfg, args.img_size, args.batch_size, args.data_dir, args.download
    )
    print(f"saved {args.out}: {args.model}, val top-1 {metrics['val_top1']:.2f}% in {metrics['train_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    run_cli(main)
