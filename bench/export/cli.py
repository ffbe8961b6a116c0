"""``python -m bench.export RUN_ID [--variant RECIPE] [--out DIR] [--force] [--check [--check-python PATH]]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from data.errors import ArgumentParser


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m bench.export",
        description="Export a measured variant as a folder for a service (model, predict.py, serve.py, Dockerfile).",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a run under the results folder's runs/ (as --resume takes it)")
    p.add_argument("--variant", metavar="RECIPE", help="the recipe to export (default: the one the run's answer named)")
    p.add_argument("--out", metavar="DIR", help="the folder to write (default: ./<run-id>-<recipe>)")
    p.add_argument("--force", action="store_true", help="replace --out when it exists and is not empty")
    p.add_argument("--check", action="store_true", help="run the folder on the val split and compare predictions")
    p.add_argument(
        "--check-python",
        metavar="PATH",
        help="run the check (as --check) with predict.py under this interpreter instead of a fresh virtual "
        "environment; it needs the folder's requirements.txt installed",
    )
    return p


def checked_interpreter(path: str) -> str:
    """``--check-python`` as an absolute path (the check runs in a scratch folder) that runs and has what every
    exported folder needs (numpy, Pillow): an interpreter that cannot is bad input, not a failed export."""
    import subprocess

    from data.errors import InputError
    from data.paths import absolute

    python = absolute(path)
    if python.is_dir():
        raise InputError(f"--check-python {python} is a folder; name its Python interpreter (for a venv: bin/python)")
    if not python.is_file():
        raise InputError(f"--check-python {python}: no such file")
    try:
        done = subprocess.run([str(python), "-c", "import numpy, PIL"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"--check-python {python} does not run: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(
            f"--check-python {python} cannot import numpy and Pillow ({last}): install the folder's "
            "requirements.txt into it, or leave --check-python out to check in a fresh virtual environment"
        )
    return str(python)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.export.source import choose, open_run
    from bench.export.writer import earlier_export, export_chosen

    args = build_parser().parse_args(argv)
    python = checked_interpreter(args.check_python) if args.check_python else None
    chosen = choose(open_run(args.run_id), args.variant)
    checking = args.check or python is not None
    folder = earlier_export(chosen, args.out) if checking and not args.force else None
    if folder is not None:
        print(f"checking the export of {chosen.recipe} already in {folder} (--force writes it again)", flush=True)
    else:
        folder = export_chosen(chosen, args.out, args.force)
        print(f"exported {chosen.recipe} ({chosen.device}) of run {chosen.run.run_id} to {folder}", flush=True)
    if over := chosen.over_budget():
        print(f"warning: {over}; exported because --variant named it (MODEL_CARD.md says so)", file=sys.stderr)
    if not checking:
        return 0
    from bench.export.check import check_export

    return check_export(folder, chosen, python)
