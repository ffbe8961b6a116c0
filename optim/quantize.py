"""``python -m optim.quantize CKPT``: an INT8 variant with an accuracy budget (PTQ, QAT or dynamic).

The steps themselves live in :mod:`optim.ptq`, :mod:`optim.qat` and :mod:`optim.dynamic`; this command turns its
options into one of their recipes and builds it with :func:`optim.accuracy_budget.run_with_budget`, which falls back
to other calibrations or FP32 layers when top-1 drops more than ``--max-drop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data.errors import ArgumentParser, InputError, MissingDependencyError, run_cli

METHODS = ("ptq", "qat", "dynamic")


def build_parser() -> ArgumentParser:
    from optim.accuracy_budget import add_budget_arguments
    from optim.cli import add_producer_arguments

    p = ArgumentParser(prog="python -m optim.quantize", description="INT8 quantization with an accuracy budget.")
    add_producer_arguments(p)
    p.add_argument("--method", default="ptq", choices=list(METHODS), help="default ptq")
    p.add_argument(
        "--backend", help="ptq: x86 | ort | tensorrt | ov (default: ort on cpu, tensorrt on cuda); qat: x86 | ort"
    )
    p.add_argument("--calib", help="ort: minmax (default) | entropy | percentile; x86: histogram (default) | minmax")
    p.add_argument("--epochs", type=int, default=1, help="qat fine-tuning epochs (default 1)")
    add_budget_arguments(p)
    return p


def recipe_from_args(args: Any) -> str:
    """The recipe the options describe (the variant's name); bad combinations are one line."""
    from optim.int8 import default_backend
    from optim.ptq import parse_ptq_args, ptq_backend
    from optim.qat import DEFAULT_QAT_EPOCHS, QAT_BACKENDS
    from optim.registry import load_producers

    load_producers()
    if args.method == "dynamic":
        if args.backend or args.calib:
            raise InputError("--method dynamic takes no --backend or --calib (it quantizes nn.Linear on CPU)")
        return "dynamic"
    backend = args.backend or default_backend(args.device)
    if args.method == "qat":
        if backend not in QAT_BACKENDS:
            raise InputError(f"--method qat supports --backend {' or '.join(QAT_BACKENDS)}, got {backend!r}")
        if args.epochs <= 0:
            raise InputError(f"--epochs must be positive, got {args.epochs}")
        extra = [] if args.epochs == DEFAULT_QAT_EPOCHS else [f"epochs={args.epochs}"]
        return f"qat({','.join([backend, *extra])})"
    spec = ptq_backend(backend)
    if spec.available is not None and (reason := spec.available(args.device)):
        raise MissingDependencyError(f"--backend {backend}: {reason}")
    parts = [backend, *([f"calib={args.calib}"] if args.calib else [])]
    parse_ptq_args(parts)  # validates the pair, one line on error
    return f"ptq({','.join(parts)})"


def main(argv: Sequence[str] | None = None) -> int:
    from optim.accuracy_budget import run_with_budget

    args = build_parser().parse_args(argv)
    recipe = recipe_from_args(args)
    return run_with_budget(recipe, args, prog="optim.quantize", fallbacks=args.method == "ptq")


if __name__ == "__main__":
    run_cli(main)
