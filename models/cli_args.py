"""The checkpoint options every command takes, parsed into one :class:`~models.spec.LoadSpec`.

``python -m bench``, ``pytest bench``, the producer commands, ``python -m bench.profile`` and the gate's A/B mode
all read a checkpoint the same way, so they declare the same options here and build the spec with the same
function; the spec then travels whole to every process the command starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from data.errors import InputError
from models.spec import LoadSpec, parse_floats, parse_model_kwargs

MODEL_HELP = "timm architecture (needed for plain state dicts), or package.module:callable for your own model class"


def add_load_arguments(parser: argparse.ArgumentParser, random_init: bool = True) -> None:
    """The positional checkpoint and the options that say how to read it."""
    parser.add_argument(
        "ckpt",
        nargs="?",
        help="checkpoint file or timm model folder (default: the embedded digits model, trained once and cached)",
    )
    group = parser.add_argument_group("loading the checkpoint")
    group.add_argument("--model", help=MODEL_HELP)
    group.add_argument("--model-kwargs", help="arguments of a --model factory: key=value,... or a JSON object")
    group.add_argument("--num-classes", type=int, help="class count (checked against the checkpoint)")
    group.add_argument("--img-size", type=int, help="input resolution (default: the checkpoint's or the model's)")
    group.add_argument("--mean", help="normalisation mean, e.g. 0.5,0.5,0.5 (default: the model's)")
    group.add_argument("--std", help="normalisation std, e.g. 0.5,0.5,0.5 (default: the model's)")
    if random_init:
        group.add_argument("--random-init", action="store_true", help="no checkpoint: random weights, speed only")


def load_spec(
    ckpt: str | None,
    model: str | None = None,
    model_kwargs: str | None = None,
    num_classes: int | None = None,
    img_size: int | None = None,
    mean: str | None = None,
    std: str | None = None,
    random_init: bool = False,
) -> LoadSpec:
    """Validate the loading options; no checkpoint and no ``random_init`` means the embedded default.

    The path is made absolute, so every process (started anywhere) reads the same file.
    """
    if random_init and ckpt:
        raise InputError("--random-init and a checkpoint exclude each other")
    if random_init and not model:
        raise InputError("--random-init needs --model ARCH (any timm name, or your package.module:callable)")
    if ckpt is None and not random_init:
        if model:
            raise InputError(f"--model {model} without a checkpoint: pass CKPT, or --random-init for speed only")
        from models.default import ensure_default_checkpoint

        ckpt = str(ensure_default_checkpoint())
    spec = LoadSpec(
        path=str(Path(ckpt).expanduser().absolute()) if ckpt else None,
        model=model,
        model_kwargs=parse_model_kwargs(model_kwargs) if model_kwargs else {},
        num_classes=num_classes,
        img_size=img_size,
        mean=parse_floats(mean, "--mean") if mean else None,
        std=parse_floats(std, "--std") if std else None,
    )
    return spec.validated()


def load_spec_from_args(args: Any) -> LoadSpec:
    """:func:`load_spec` from a namespace made by a parser with :func:`add_load_arguments`."""
    return load_spec(
        args.ckpt,
        args.model,
        args.model_kwargs,
        args.num_classes,
        args.img_size,
        args.mean,
        args.std,
        getattr(args, "random_init", False),
    )


def placeholder_note(info: Any) -> str | None:
    """The line a command prints when the checkpoint pickled classes that were read as inert data."""
    names = list(getattr(info, "placeholders", ()) or ())
    if not names:
        return None
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return f"note: read as inert placeholders, never imported or run: {shown}"
