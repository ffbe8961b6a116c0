"""``python -m bench.profile --step my_pkg.mod:make_step``: the three profilers and the verdict on the user's own loop.

Users profile training loops that are not timm classifiers (a PyG GNN on Cora, a Lightning module's
``training_step``). They name a factory, which ``bench.profile`` calls once with no arguments and which returns
either

* ``step``: a zero-argument function that runs one whole step, data included (every second of it is compute), or
* ``(step, data)``: ``data`` is re-iterable (a DataLoader, a list of batches, a class with ``__iter__``); each
  step is ``step(next(batch))``, and the time spent in ``next`` is the data side of the verdict. A DataLoader
  also gets the measured input-pipeline fixes (more workers, persistent workers).

The factory does its own set-up (model, optimizer, device), so the profilers see only the steps. Like
``--model``, the factory is code the user names on the command line; nothing in a file chooses it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bench.profile.workloads import NoData, Workload, data_functions
from data.errors import InputError
from models.factory import import_factory

OPTION = "--step"


@dataclass(frozen=True)
class UserStep:
    """The user's step function and its data (None when the step fetches its own)."""

    name: str
    step: Callable[..., Any]
    data: Iterable | None


_NOTHING = object()


def _check_data(spec: str, data: Any) -> Iterable:
    """Refuse data no epoch could run on, without starting it: a DataLoader's ``iter`` would spawn its workers."""
    if not isinstance(data, Iterable):
        raise InputError(f"{OPTION} {spec}: the data it returned ({type(data).__name__}) is not iterable")
    if isinstance(data, Iterator):
        raise InputError(
            f"{OPTION} {spec}: the data it returned is a one-shot iterator (a generator?); return something each "
            "epoch can iterate again: a DataLoader, a list of batches, or an object with __iter__"
        )
    try:
        empty = len(data) == 0  # type: ignore[arg-type]
    except TypeError:  # no length (an IterableDataset's loader): only a first batch can tell
        empty = next(iter(data), _NOTHING) is _NOTHING
    if empty:
        raise InputError(f"{OPTION} {spec}: the data it returned holds no batches")
    return data


def _takes_batch(step: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(step).parameters.values()
    except (TypeError, ValueError):  # a C function: assume the common case
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return bool(positional)


def load_user_step(spec: str) -> UserStep:
    """Import and call the factory; anything but ``step`` or ``(step, data)`` back is one line of bad input."""
    factory = import_factory(spec, OPTION)
    try:
        made = factory()
    except Exception as exc:
        raise InputError(f"{OPTION} {spec}: calling it failed ({type(exc).__name__}: {exc})") from None
    from torch import nn

    if isinstance(made, nn.Module):
        raise InputError(f"{OPTION} {spec} returned a model; return a step function that trains it (or (step, data))")
    if callable(made):
        return UserStep(spec, made, None)
    if isinstance(made, tuple | list) and len(made) == 2 and callable(made[0]):
        step, data = made
        if not _takes_batch(step):
            raise InputError(f"{OPTION} {spec}: with data, the step must take the batch (def step(batch): ...)")
        return UserStep(spec, step, _check_data(spec, data))
    raise InputError(
        f"{OPTION} {spec} returned a {type(made).__name__}; return step (a function of no arguments) or (step, data)"
    )


def user_workload(user: UserStep, device: str) -> Workload:
    """The user's step as a workload: the profilers and the loop timer run it like any target."""
    from torch.utils.data import DataLoader

    step = user.step

    def run_step(*batch: Any) -> None:
        """The user's step; one that raises is bad input, named in one line (as a factory that raises is)."""
        try:
            step(*batch)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise InputError(f"{OPTION} {user.name}: the step raised {type(exc).__name__}: {first}") from None

    if user.data is None:

        def compute(_batch: Any) -> None:
            run_step()

        loader: Iterable = NoData()
        unit = "steps"
    else:

        def compute(batch: Any) -> None:
            run_step(batch)

        loader = user.data
        unit = "samples" if getattr(loader, "batch_size", None) else "steps"
    workload = Workload("step", loader, device, compute=compute, move_to_device=False, unit=unit)
    own = getattr(step, "__func__", step)
    workload.line_functions = [own] if inspect.isfunction(own) else []
    if isinstance(loader, DataLoader):
        workload.line_functions += data_functions(loader)
    return workload
