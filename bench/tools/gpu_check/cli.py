"""``python -m bench.tools.gpu_check``: the options, checked once, then the check (or ``--fetch-wheels``).

Bad input ends here with one ``error:`` line and exit 2, before any scratch folder or child process exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.tools.gpu_check.plan import GPU_RECIPES
from bench.tools.gpu_check.run import CheckOptions, check
from bench.tools.gpu_check.wheels import fetch_wheels
from data.errors import ArgumentParser, InputError
from data.paths import absolute
from optim.recipe import split_top_level

DESCRIPTION = "make gpu-check OUT=DIR [WHEELS=DIR]: every CUDA path of optbench verified by one command (docs/gpu.md)"


def build_parser() -> ArgumentParser:
    """The options; ``--results DIR`` (every command's, from :class:`~data.errors.ArgumentParser`) keeps the run
    folders, the trace and the caches under DIR instead of a scratch folder that is removed."""
    parser = ArgumentParser(prog="python -m bench.tools.gpu_check", description=DESCRIPTION)
    parser.add_argument("--out", metavar="DIR", help="folder for the (at most 8) files the check writes")
    parser.add_argument("--wheels", metavar="DIR", help="carried wheels to use where the machine lacks the package")
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when torch sees a GPU, else the dry run), cuda, or cpu (dry run)"
    )
    parser.add_argument("--minutes", type=float, help="wall-clock budget of the whole check (default 8; dry run 3)")
    parser.add_argument("--recipes", help=f"comma-separated sweep recipes (default on CUDA: {','.join(GPU_RECIPES)})")
    parser.add_argument("--rounds", type=int, help="paired rounds per variant and scenario (default 10; dry run 5)")
    parser.add_argument("--sweep-args", help="more options for python -m bench, space-separated (e.g. '--serve 4')")
    parser.add_argument(
        "--fetch-wheels", metavar="DIR", help="download the wheels the check carries into DIR with pip, then exit"
    )
    return parser


def parse_recipes(text: str | None) -> tuple[str, ...]:
    """``--recipes`` split at the commas outside parentheses: ``compile(max-autotune,fp16,cudnn-convs)`` is one."""
    return tuple(r for r in split_top_level(text, ",") if r) if text else ()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.fetch_wheels:
        return fetch_wheels(absolute(args.fetch_wheels))
    if not args.out:
        raise InputError("--out DIR is required (make gpu-check OUT=DIR)")
    if args.device not in ("auto", "cuda", "cpu"):
        raise InputError(f"--device must be auto, cuda or cpu, got {args.device!r}")
    if args.minutes is not None and not 0.5 <= args.minutes <= 60:
        raise InputError(f"--minutes must be between 0.5 and 60, got {args.minutes}")
    if args.rounds is not None and args.rounds < 1:
        raise InputError(f"--rounds must be at least 1, got {args.rounds}")
    if args.wheels and not Path(args.wheels).is_dir():
        raise InputError(f"--wheels {args.wheels} is not a folder")
    options = CheckOptions(
        out=Path(args.out),
        wheels=absolute(args.wheels) if args.wheels else None,
        device=args.device,
        minutes=args.minutes,
        recipes=parse_recipes(args.recipes),
        rounds=args.rounds,
        sweep_args=tuple(args.sweep_args.split()) if args.sweep_args else (),
        results=absolute(args.results) if args.results else None,
    )
    return check(options)
