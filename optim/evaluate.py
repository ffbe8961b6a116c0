"""Accuracy is its own full pass over the validation split, separate from the timed runs.

The pass can run at a fixed batch size (:func:`fixed_batches`): a variant compiled for static shapes
(``compile``, ``ptq(x86)``) compiles a graph for every new batch size it sees, and the loader's batches of 32
plus a short last one cost two more compiles, each as slow as the build's own, that nobody deploys. Evaluated at
the throughput batch, which the warm-up already compiled, it costs none, provided its batches are tensors of the
same kind as the timed ones: a tensor made under ``torch.inference_mode`` fails the compiled graph's guards (its
dispatch keys differ) and compiled everything once more (8 s for ``ptq(x86)`` on the embedded default, a minute
on resnet50). So the pass runs under ``no_grad``; every variant's predict enters inference mode itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def fixed_batches(loader, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """``(images, targets, real)`` in batches of exactly ``batch_size``, re-cut from ``loader``'s batches.

    The last batch is filled up with copies of its own images (``real`` says how many rows count): copies
    leave per-batch statistics such as a dynamic quantizer's activation range as the real rows set them,
    where zeros or other images could move them. Eval-mode models treat rows independently otherwise.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    held_x: list[torch.Tensor] = []
    held_y: list[torch.Tensor] = []
    count = 0
    for images, target in loader:
        held_x.append(images)
        held_y.append(torch.as_tensor(target))
        count += images.shape[0]
        while count >= batch_size:  # one tensor held after the first cut: slices, not a copy per batch
            x, y = (held_x[0], held_y[0]) if len(held_x) == 1 else (torch.cat(held_x), torch.cat(held_y))
            yield x[:batch_size], y[:batch_size], batch_size
            held_x, held_y, count = [x[batch_size:]], [y[batch_size:]], count - batch_size
    if count:
        x, y = torch.cat(held_x), torch.cat(held_y)
        fill = torch.arange(batch_size) % count
        yield x[fill], y[fill], count


def predict_all(variant, loader, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top-5 class indices, top-1 predictions, targets) over ``loader``, at ``batch_size`` if given."""
    top5, targets = [], []
    batches = fixed_batches(loader, batch_size) if batch_size else ((x, y, len(x)) for x, y in loader)
    for images, target, real in batches:
        logits = variant(images)[:real]
        target = target[:real]
        k = min(5, logits.shape[1])
        top5.append(logits.topk(k, dim=1).indices.numpy())
        targets.append(np.asarray(target))
    top5_arr = np.concatenate(top5) if top5 else np.zeros((0, 5), dtype=np.int64)
    return top5_arr, top5_arr[:, 0], np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64)


def agreement(preds: np.ndarray, reference: np.ndarray) -> float:
    """Top-1 agreement with the reference's predictions, in percent (NaN when there is nothing to compare)."""
    same_size = preds.size and preds.size == reference.size
    return float((preds == reference).mean() * 100) if same_size else float("nan")


def accuracy_metrics(top5: np.ndarray, targets: np.ndarray, reference: np.ndarray | None) -> dict[str, Any]:
    n = int(targets.size)
    top1 = float((top5[:, 0] == targets).mean() * 100) if n else float("nan")
    top5_acc = float((top5 == targets[:, None]).any(axis=1).mean() * 100) if n else float("nan")
    out: dict[str, Any] = {"top1": top1, "top5": top5_acc, "val_images": n}
    if reference is not None and reference.size == n:
        out["agreement"] = agreement(top5[:, 0], reference)
    return out


@torch.no_grad()  # not inference_mode: see below
def evaluate_variant(
    variant, loader, reference: np.ndarray | None = None, batch_size: int | None = None
) -> tuple[dict[str, Any], np.ndarray]:
    """Top-1, top-5 and agreement (percent) with the FP32 model's predictions; also returns the predictions.

    ``batch_size``: evaluate at this batch (see :func:`fixed_batches`) instead of the loader's."""
    top5, preds, targets = predict_all(variant, loader, batch_size)
    return accuracy_metrics(top5, targets, reference), preds
