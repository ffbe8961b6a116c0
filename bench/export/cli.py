"""``python -m bench.export RUN_ID [--variant RECIPE] [--out DIR] [--force] [--check [--check-python PATH]]``."""

from __future__ import annotations

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
        help="with --check: run predict.py under this interpreter instead of a fresh virtual environment",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from bench.export.source import choose, open_run
    from bench.export.writer import export_chosen

    args = build_parser().parse_args(argv)
    chosen = choose(open_run(args.run_id), args.variant)
    folder = export_chosen(chosen, args.out, args.force)
    print(f"exported {chosen.recipe} ({chosen.device}) of run {chosen.run.run_id} to {folder}", flush=True)
    if not (args.check or args.check_python):
        return 0
    from bench.export.check import check_export

    return check_export(folder, chosen, args.check_python)
