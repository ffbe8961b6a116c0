"""BatchNorm running statistics recomputed on data: what a pruned and briefly fine-tuned network needs before its
accuracy in eval mode means anything."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

BN_RECALIBRATION_IMAGES = 512


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: Any, device: str, images: int = BN_RECALIBRATION_IMAGES) -> dict:
    """Recompute every BatchNorm's running mean and variance on train images, as plain averages.

    Pruning changes what each remaining channel sees; a short fine-tune moves the weights (its loss, measured in
    train mode on batch statistics, looks recovered) while the running statistics, updated with momentum 0.1 for a
    few steps, still describe the unpruned network, and the model in eval mode can fall to chance. Only the
    BatchNorm layers run in train mode here, nothing else changes."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return {"layers": 0}
    saved = [(m, m.momentum, m.training) for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
        m.train()
    seen = 0
    try:
        for batch in loader:
            x = batch[0] if isinstance(batch, list | tuple) else batch
            model(x.to(device))
            seen += x.shape[0]
            if seen >= images:
                break
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)
    return {"layers": len(norms), "images": seen, "split": "train"}
