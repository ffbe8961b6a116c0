"""``python -m optim.quantize CKPT``: an INT8 variant with an accuracy budget.

The methods are the steps that declare themselves ``quantize_method`` (``ptq``, ``qat``, ``dynamic``), and their
options come from the steps' own arguments: this command turns ``--backend``, ``--calib`` and ``--epochs`` into one
recipe and builds it with :func:`optim.accuracy_budget.run_with_budget`, which falls back to other calibrations or
FP32 layers when top-1 drops more than ``--max-drop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data.errors import ArgumentParser, InputError, run_cli

OPTIONS = ("backend", "calib", "epochs")  # options of this command that are arguments of a method's step


def _methods() -> list[Any]:
    from optim.registry import load_producers

    return [spec for spec in load_producers().values() if spec.quantize_method]


def _arg_help(name: str) -> str:
    """What each method takes for ``--name``, from the steps' declarations."""
    parts = []
    for spec in _methods():
        arg = next((a for a in spec.arg_list() if a.name == name), None)
        if arg is not None:
            default = "" if arg.default is None or callable(arg.default) else f", default {arg.default}"
            parts.append(f"{spec.name}: {arg.metavar()}{default}")
    return "; ".join(parts) or "-"


def build_parser() -> ArgumentParser:
    from optim.accuracy_budget import add_budget_arguments
    from optim.cli import add_producer_arguments

    methods = [spec.name for spec in _methods()]
    p = ArgumentParser(prog="python -m optim.quantize", description="INT8 quantization with an accuracy budget.")
    add_producer_arguments(p)
    p.add_argument("--method", default=methods[0], choices=methods, help=f"default {methods[0]}")
    p.add_argument(
        "--backend", help=f"{_arg_help('backend')} (ptq's default: the device's, see python -m optim list ptq)"
    )
    p.add_argument("--calib", help=f"calibration method: {_arg_help('calib')}")
    p.add_argument("--epochs", type=int, help=f"fine-tuning epochs: {_arg_help('epochs')}")
    add_budget_arguments(p)
    return p


def recipe_from_args(args: Any) -> str:
    """The recipe the options describe (the variant's name): the method's step with the options it declares; an
    option the method does not take is one line."""
    from optim.recipe import parse
    from optim.registry import get_step

    spec = get_step(args.method)
    declared = {a.name: a for a in spec.arg_list()}
    parts = []
    for name in OPTIONS:
        value, arg = getattr(args, name), declared.get(name)
        if value is not None and arg is None:
            raise InputError(f"--method {args.method} takes no --{name}")
        if arg is not None and arg.positional:
            parts.append(str(value or arg.default_for(args.device)))
        elif value is not None and value != arg.default:
            parts.append(f"{name}={value}")
    recipe = f"{spec.name}({','.join(parts)})" if parts else spec.name
    return str(parse(recipe))  # a bad value is one line here, before anything loads


def main(argv: Sequence[str] | None = None) -> int:
    from optim.accuracy_budget import run_with_budget

    args = build_parser().parse_args(argv)
    recipe = recipe_from_args(args)
    return run_with_budget(recipe, args, prog="optim.quantize")


if __name__ == "__main__":
    run_cli(main)
