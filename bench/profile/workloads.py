"""The three things ``python -m bench.profile`` profiles, each as a loader plus a per-batch compute function.

A :class:`Workload` is what every profiler and the loop timer run: ``step()`` fetches one batch from the
real DataLoader (restarting it at the end of an epoch), moves it to the device and runs ``compute`` on it.
Keeping fetch and compute apart is what lets the verdict time them separately.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset

Batch = tuple[torch.Tensor, torch.Tensor]

DATA, TRAIN, INFER = "data", "train", "infer"
TARGETS = (DATA, TRAIN, INFER)


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so wall-clock time covers it (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def data_wait_event(target: str) -> Any:
    """A profiler range over one batch fetch (loader and device copy: what the verdict times as data) that the
    TensorBoard profiler plugin files under DataLoader.

    The plugin only counts operator events named ``enumerate(DataLoader)#<...>.__next__``; torch's own range of that
    name is a user annotation since torch 2.x, which the plugin drops, so its Overview would show no DataLoader
    time. ``_RecordFunctionFast`` records an operator event; plain ``record_function`` is the fallback.
    """
    name = f"enumerate(DataLoader)#optbench/{target}.__next__"
    return _FAST_EVENT(name) if _FAST_EVENT is not None else torch.profiler.record_function(name)


_FAST_EVENT = getattr(getattr(torch._C, "_profiler", None), "_RecordFunctionFast", None)  # once, not per batch


class NoData:
    """The "data" of a step that fetches its own: ``None`` forever, so the loop has nothing to wait for."""

    def __iter__(self) -> Iterator[None]:
        return itertools.repeat(None)


def batch_length(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor; 1 for anything else (a graph, a dict, None)."""
    first = batch[0] if isinstance(batch, tuple | list) and batch else batch
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() > 0 else 1


class BatchStream:
    """Endless batches from a DataLoader (or any re-iterable): a new epoch starts when one runs out."""

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader
        self._it: Iterator | None = None

    def next(self) -> Any:
        if self._it is None:
            self._it = iter(self.loader)
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            return next(self._it)

    def close(self) -> None:
        """Drop the iterator so worker processes (if any) shut down now, not at garbage collection."""
        self._it = None


@dataclass
class Workload:
    """One target: ``loader`` feeds ``compute`` (None for the data target, which only loads).

    ``loader`` is a DataLoader for the checkpoint targets; for a user's own step it is whatever re-iterable the
    user returned (or :class:`NoData`), and ``unit`` names what ``batch_size`` counts.
    """

    name: str
    loader: Iterable
    device: str
    compute: Callable[[Batch], None] | None = None
    memory_format: torch.memory_format | None = None
    move_to_device: bool = True  # False when compute does its own copy (a variant's prepare_input, a user's step)
    unit: str = "img"
    line_functions: list[Callable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _stream: BatchStream | None = field(default=None, repr=False)

    @property
    def batch_size(self) -> int:
        return int(getattr(self.loader, "batch_size", None) or 1)

    @property
    def fetches_nothing(self) -> bool:
        """True for a user step that loads its own data: every second of it counts as compute."""
        return isinstance(self.loader, NoData)

    def move(self, batch: Batch) -> Batch:
        """Host batch to the device (and memory format) the compute wants; part of the data side of a step."""
        if not self.move_to_device:
            return batch
        images, targets = batch[0], batch[1]
        dev = torch.device(self.device)
        if dev.type != "cpu":
            images = images.to(dev, non_blocking=True)
            targets = targets.to(dev, non_blocking=True)
        if self.memory_format is not None:
            images = images.contiguous(memory_format=self.memory_format)
        return images, targets

    def fetch(self) -> Batch:
        """The next batch on the device, recorded as the DataLoader wait that TensorBoard's Overview counts."""
        if self._stream is None:
            self._stream = BatchStream(self.loader)
        with data_wait_event(self.name):
            return self.move(self._stream.next())

    def step(self) -> int:
        """Fetch one batch and compute on it; returns the number of images it held."""
        batch = self.fetch()
        if self.compute is not None:
            with torch.profiler.record_function(f"optbench/{self.name}/compute"):
                self.compute(batch)
        synchronize(self.device)
        return batch_length(batch)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def base_dataset(loader: DataLoader) -> Dataset:
    """The dataset under any ``Subset`` wrappers (what ``__getitem__`` really runs)."""
    dataset = loader.dataset
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def _plain_function(obj: Any) -> Callable | None:
    """The Python function behind a bound method or function; None for C code line_profiler cannot trace."""
    fn = getattr(obj, "__func__", obj)
    return fn if inspect.isfunction(fn) else None


def transform_functions(transform: Any) -> list[Callable]:
    """Each transform's own ``forward``/``__call__`` (a Compose is opened), so the report shows time per transform."""
    if transform is None:
        return []
    parts = getattr(transform, "transforms", None)
    if parts is not None:
        return [fn for part in parts for fn in transform_functions(part)]
    if isinstance(transform, nn.Module):
        method = type(transform).forward
    else:  # the class's own __call__, looked up along the MRO (an instance attribute would not be called)
        method = next((vars(k)["__call__"] for k in type(transform).__mro__ if "__call__" in vars(k)), None)
    fn = _plain_function(method)
    return [fn] if fn is not None else []


def data_functions(loader: DataLoader) -> list[Callable]:
    """Our data hot spots: the dataset's ``__getitem__``, its image loader (ImageFolder), each transform."""
    dataset = base_dataset(loader)
    found: list[Callable] = []
    getitem = _plain_function(type(dataset).__getitem__)
    if getitem is not None:
        found.append(getitem)
    image_loader = _plain_function(getattr(dataset, "loader", None))  # torchvision DatasetFolder's pil_loader
    if image_loader is not None:
        found.append(image_loader)
    found.extend(transform_functions(getattr(dataset, "transform", None)))
    unique: list[Callable] = []
    for fn in found:
        if fn not in unique:
            unique.append(fn)
    return unique


def _worker_note(loader: DataLoader) -> list[str]:
    if loader.num_workers > 0:
        return [
            f"num_workers={loader.num_workers}: __getitem__ and the transforms run in worker processes, which "
            "cProfile and line_profiler in this process do not see (use --num-workers 0 to profile them)"
        ]
    return []


def data_workload(loader: DataLoader, device: str = "cpu") -> Workload:
    """Iterate the real DataLoader (with the model's transforms) and copy each batch to the device; no model."""
    return Workload(DATA, loader, device, line_functions=data_functions(loader), notes=_worker_note(loader))


def train_compute(
    model: nn.Module, lr: float = 1e-4
) -> tuple[Callable[[Batch], None], torch.optim.Optimizer, nn.Module]:
    """A real forward/backward/optimizer step (``models.train.train_step``, AdamW as in training)."""
    from models.train import train_step

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    criterion = nn.CrossEntropyLoss()

    def compute(batch: Batch) -> None:
        train_step(model, batch[0], batch[1], optimizer, criterion)

    return compute, optimizer, criterion


def train_workload(model: nn.Module, loader: DataLoader, device: str = "cpu", lr: float = 1e-4) -> Workload:
    """Training steps of ``model`` (a copy the caller may mutate) on batches from ``loader``."""
    from models.train import train_step

    model.to(device).train()
    compute, _, _ = train_compute(model, lr)
    workload = Workload(TRAIN, loader, device, compute=compute, notes=_worker_note(loader))
    workload.line_functions = [train_step, *data_functions(loader)]
    return workload


def infer_workload(variant: Any, loader: DataLoader, device: str = "cpu") -> Workload:
    """A variant's predict on batches from ``loader``: ``prepare_input`` then ``predict``, as the benchmark times it."""

    def compute(batch: Batch) -> None:
        variant.predict(variant.prepare_input(batch[0]))

    workload = Workload(INFER, loader, device, compute=compute, move_to_device=False, notes=_worker_note(loader))
    predict = _plain_function(variant.predict)
    workload.line_functions = ([predict] if predict is not None else []) + data_functions(loader)
    return workload


def with_loader_config(
    loader: DataLoader,
    num_workers: int | None = None,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
) -> DataLoader:
    """The same dataset, batch size and order, with other loader settings (the fixes the verdict tries)."""
    workers = loader.num_workers if num_workers is None else num_workers
    pin = loader.pin_memory if pin_memory is None else pin_memory
    persistent = loader.persistent_workers if persistent_workers is None else persistent_workers
    shuffle = isinstance(loader.sampler, RandomSampler)
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=persistent and workers > 0,
        collate_fn=loader.collate_fn,
        drop_last=loader.drop_last,
        generator=torch.Generator().manual_seed(0) if shuffle else None,
    )
