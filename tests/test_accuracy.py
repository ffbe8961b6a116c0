"""Accuracy at a fixed batch: the same predictions as the loader's batches, and no batch size the timing did not use."""

from __future__ import annotations

import pytest
import torch

from optim.evaluate import evaluate_variant, fixed_batches


def _loader(sizes: list[int]):
    """Batches like a DataLoader's: (images, targets), targets numbering the images in order."""
    start, out = 0, []
    for n in sizes:
        images = torch.arange(start, start + n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 3, 2, 2)
        out.append((images.contiguous(), torch.arange(start, start + n)))
        start += n
    return out


def test_fixed_batches_recut_the_loader_and_fill_the_last_with_its_own_images():
    batches = list(fixed_batches(_loader([32, 32, 8]), 16))
    assert [x.shape[0] for x, _, _ in batches] == [16] * 5
    assert [real for _, _, real in batches] == [16, 16, 16, 16, 8]
    seen = torch.cat([y[:real] for _, y, real in batches])
    assert seen.tolist() == list(range(72))  # every image once, in order
    last_x, last_y, _ = batches[-1]
    assert last_y.tolist() == [64, 65, 66, 67, 68, 69, 70, 71] * 2  # filled with copies of its own rows
    assert torch.equal(last_x[:, 0, 0, 0], last_y.float())
    with pytest.raises(ValueError):
        next(fixed_batches(_loader([4]), 0))


class _ShapeRecorder:
    """A variant whose logits depend on each row alone; records the batch sizes it was called with."""

    def __init__(self, classes: int = 10) -> None:
        self.sizes: list[int] = []
        self.classes = classes

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.sizes.append(images.shape[0])
        label = images[:, 0, 0, 0].long() % self.classes
        return torch.nn.functional.one_hot(label, self.classes).float()


def test_evaluation_at_a_fixed_batch_matches_the_loader_and_uses_only_that_batch():
    loader = _loader([32, 32, 8])
    plain, fixed = _ShapeRecorder(), _ShapeRecorder()
    acc_plain, preds_plain = evaluate_variant(plain, loader)
    acc_fixed, preds_fixed = evaluate_variant(fixed, loader, preds_plain, batch_size=16)
    assert set(plain.sizes) == {32, 8} and set(fixed.sizes) == {16}
    assert preds_fixed.tolist() == preds_plain.tolist()
    assert acc_fixed["val_images"] == acc_plain["val_images"] == 72  # the copies are not counted
    assert acc_fixed["top1"] == acc_plain["top1"] and acc_fixed["agreement"] == 100.0


def test_a_job_measures_accuracy_at_its_largest_timed_batch(tmp_path, tiny_ckpt):
    """Through the worker: a compiled variant would otherwise compile the val loader's 32 and its remainder."""
    from optbench_testing import tiny_config

    from bench.run.local import LocalExecutor
    from bench.run.sweep import run_sweep
    from bench.scenarios import ScenarioConfig

    scenarios = (
        ScenarioConfig("latency", 1, warmup_iters=1, warmup_seconds=0.0, min_iters=3, min_seconds=0.0),
        ScenarioConfig("throughput", 12, warmup_iters=1, warmup_seconds=0.0, min_iters=2, min_seconds=0.0),
    )
    cfg = tiny_config(tiny_ckpt, ["fp32"], scenarios=scenarios, paired=False)
    rows = run_sweep(cfg, tmp_path / "run", LocalExecutor(), progress=False)
    assert rows[0]["accuracy_batch"] == 12
    assert rows[0]["val_images"] == 360 and rows[0]["top1"] > 50
    # the same top-1 as a plain pass over the loader's own batches: the fill rows are not counted
    rows_plain = run_sweep(cfg.replace(scenarios=scenarios[:1]), tmp_path / "run2", LocalExecutor(), progress=False)
    assert rows_plain[0]["accuracy_batch"] == 1
    assert rows_plain[0]["top1"] == pytest.approx(rows[0]["top1"])


def test_quantize_cli_evaluates_at_one_batch_size_only():
    """A static-shape ptq(x86) variant would compile the loader's short last batch just for the accuracy pass."""
    from torch.utils.data import DataLoader, TensorDataset

    from optim.accuracy_budget import _evaluate

    images = torch.arange(72, dtype=torch.float32).reshape(72, 1, 1, 1).expand(72, 3, 2, 2).contiguous()
    val = DataLoader(TensorDataset(images, torch.arange(72)), batch_size=32)
    variant = _ShapeRecorder()
    acc, preds = _evaluate(variant, val)
    assert set(variant.sizes) == {32} and acc["val_images"] == 72 and preds.tolist() == [i % 10 for i in range(72)]
