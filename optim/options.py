"""The options every command that loads a checkpoint and builds variants shares, and the one set of checks they get.

``python -m bench``, ``pytest bench``, ``python -m bench.profile``, the gate's A/B mode and the producer commands
(``python -m optim.quantize``, ...) all declare these options here and check them here, before any work: a bad
``--img-size``, ``--threads`` or data spec is refused the same way by every command, and the defaults (threads,
calibration images, the data a checkpoint was trained on) are defined once. :func:`settings_from_args` then gives the
:class:`~optim.context.BuildSettings` every build of the command uses.
"""

from __future__ import annotations

import sys
from typing import Any

from data.errors import InputError, MissingDependencyError
from data.loaders import CALIB_SIZE
from models.cli_args import add_load_arguments, load_spec_from_args, placeholder_note
from models.input_size import check_input_size
from optim.context import RANDOM_INIT_CALIB_SIZE, BuildSettings, default_calib_size

DEVICES = ("cpu", "cuda")


def add_data_arguments(parser: Any) -> None:
    parser.add_argument("--data", help="digits | ImageFolder dir | torch/<name> (default: the checkpoint's own)")
    parser.add_argument("--data-dir", help="root for timm dataset names such as torch/gtsrb")
    parser.add_argument(
        "--skip-bad-images", action="store_true", help="leave unreadable images out instead of stopping"
    )


def add_build_arguments(parser: Any, device: bool = True, calib: bool = True, threads: bool = True) -> None:
    """Where and how variants are built: device, threads, seed, calibration images, smoke runs."""
    if device:
        parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    if threads:
        parser.add_argument("--threads", type=int, help="threads for every intra-op pool (default: CPUs available)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration subset, fine-tuning and inputs")
    if calib:
        parser.add_argument(
            "--calib-size",
            type=int,
            help=f"calibration images from the train split (default {CALIB_SIZE}; {RANDOM_INIT_CALIB_SIZE} with random "
            "weights: nothing to keep)",
        )
    parser.add_argument(
        "--quick", action="store_true", help="short timing and fine-tuning: a smoke run, not for decisions"
    )


def add_checkpoint_arguments(parser: Any, random_init: bool = True, data: bool = True) -> None:
    """The checkpoint, how to read it, and its data."""
    add_load_arguments(parser, random_init=random_init)
    if data:
        add_data_arguments(parser)


def check_device(device: str) -> None:
    """A known device, and on ``cuda`` one that is visible."""
    if device not in DEVICES:
        raise InputError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise MissingDependencyError(
                "--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)"
            )


def check_build_options(args: Any) -> None:
    """Device, threads and counts, before anything is loaded."""
    from models.machine import available_cpus

    check_device(getattr(args, "device", "cpu") or "cpu")
    for name in ("threads", "calib_size"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be positive, got {value}")
    threads, cpus = getattr(args, "threads", None), available_cpus()
    if threads and threads > cpus:
        raise InputError(f"--threads {threads} is more than the {cpus} CPUs this process may use")


def load_checked(args: Any) -> tuple[Any, Any]:
    """(the load spec, the checkpoint it names loaded once), an explicit ``--img-size`` checked against the model."""
    import models

    spec = load_spec_from_args(args)
    loaded = models.load(spec)
    if note := placeholder_note(loaded.info):
        print(note, file=sys.stderr)
    check_input_size(loaded.model, loaded.info.arch, getattr(args, "img_size", None))
    return spec, loaded


def data_spec_for(args: Any, info: Any) -> str:
    """``--data``, else the data the checkpoint records, else the bundled digits (the calibration data of last resort,
    for random weights); a folder as an absolute path."""
    import data

    return data.resolve_spec(getattr(args, "data", None) or info.data_spec or data.DIGITS)


def settings_from_args(args: Any, loaded: Any, max_batch: int = 16, check_data: bool = True) -> BuildSettings:
    """The build settings of a command, its data checked once here (one line and exit 2 before any work)."""
    import data
    from models.machine import default_threads

    spec = data_spec_for(args, loaded.info)
    data_dir = data.resolve_dir(getattr(args, "data_dir", None))
    skip = bool(getattr(args, "skip_bad_images", False))
    if check_data and (report := data.check_spec(spec, loaded.info, data_dir, skip)):
        print(report, file=sys.stderr)
    calib = getattr(args, "calib_size", None)
    return BuildSettings(
        device=getattr(args, "device", "cpu") or "cpu",
        threads=getattr(args, "threads", None) or default_threads(),
        seed=int(getattr(args, "seed", 0) or 0),
        quick=bool(getattr(args, "quick", False)),
        calib_size=calib or default_calib_size(loaded.info.has_weights),
        max_drop=1.0 if getattr(args, "max_drop", None) is None else float(args.max_drop),
        data_spec=spec,
        data_dir=data_dir,
        skip_bad_images=skip,
        max_batch=max_batch,
    )
