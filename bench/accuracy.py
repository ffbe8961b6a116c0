"""Accuracy is its own full pass over the validation split, separate from the timed runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def predict_all(variant, loader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top-5 class indices, top-1 predictions, targets) over ``loader``."""
    top5, targets = [], []
    for images, target in loader:
        logits = variant(images)
        k = min(5, logits.shape[1])
        top5.append(logits.topk(k, dim=1).indices.numpy())
        targets.append(np.asarray(target))
    top5_arr = np.concatenate(top5) if top5 else np.zeros((0, 5), dtype=np.int64)
    return top5_arr, top5_arr[:, 0], np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64)


def accuracy_metrics(top5: np.ndarray, targets: np.ndarray, reference: np.ndarray | None) -> dict[str, Any]:
    n = int(targets.size)
    top1 = float((top5[:, 0] == targets).mean() * 100) if n else float("nan")
    top5_acc = float((top5 == targets[:, None]).any(axis=1).mean() * 100) if n else float("nan")
    out: dict[str, Any] = {"top1": top1, "top5": top5_acc, "val_images": n}
    if reference is not None and reference.size == n:
        out["agreement"] = float((top5[:, 0] == reference).mean() * 100)
    return out


@torch.inference_mode()
def evaluate_variant(variant, loader, reference: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Top-1, top-5 and agreement (percent) with the FP32 model's predictions; also returns the predictions."""
    top5, preds, targets = predict_all(variant, loader)
    return accuracy_metrics(top5, targets, reference), preds
