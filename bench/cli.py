"""``python -m bench``: measure every variant of a checkpoint and print the leaderboard and the answer.

This module only turns the command line into a :class:`~bench.config.RunConfig` (:mod:`bench.options`, or the
stored one with ``--resume``) and hands it to the sweep; everything else happens in :mod:`bench.run` and
:mod:`bench.report`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import ArgumentParser, InputError

SEARCH_MINUTES = 30.0  # --search's time budget when none is given


def build_parser() -> ArgumentParser:
    from bench.options import add_run_arguments
    from optim.options import add_build_arguments, add_checkpoint_arguments

    p = ArgumentParser(prog="python -m bench", description="Build and benchmark deployment variants of a checkpoint.")
    add_checkpoint_arguments(p)
    add_build_arguments(p)
    add_run_arguments(p)
    p.add_argument("--run-id", help="name of a new run directory under the results folder's runs/")
    p.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run; finished variants are skipped")
    p.add_argument("--no-retry-failed", action="store_true", help="on --resume, keep failed variants as they are")
    p.add_argument("--list", action="store_true", help="list recipe steps, this machine's default recipes, then exit")
    p.add_argument("--sweep-file", help="a TOML grid of checkpoints x recipes x targets: one run directory each")
    p.add_argument("--search", action="store_true", help="after the sweep, measure chains around the fastest variants")
    p.add_argument("--search-minutes", type=float, help=f"time budget of --search (default {SEARCH_MINUTES:g})")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.add_argument(
        "--export", metavar="DIR", help="after the sweep, export the variant the answer named into DIR (docs/export.md)"
    )
    return p


def _new_run_dir(run_id: str) -> Path:
    from bench.run.run_dir import has_content, run_dir

    directory = run_dir(run_id)
    if has_content(directory):
        raise InputError(
            f"run {run_id!r} already exists in {directory}; continue it with --resume {run_id}, or pick a new --run-id"
        )
    return directory


def _grid_plan(stem: str, options: list[str]) -> list[str]:
    """Check one checkpoint of a sweep file before any is measured; the arguments it will run with: a new run, or
    the run of that name continued (looked for in the results folder its options name)."""
    from bench.options import run_config_from_args
    from bench.run.resume import resume_config
    from bench.run.run_dir import run_dir

    parser = build_parser()
    parser.parse_args(options)  # fixes the results folder its options name, where its run is
    if not (run_dir(stem) / "run_config.json").is_file():
        new = [*options, "--run-id", stem]
        run_config_from_args(parser.parse_args(new))
        return new
    resumed = ["--resume", stem, *options]
    try:
        resume_config(stem, resumed, parser)
    except InputError as exc:
        raise InputError(
            f"{exc} (in a sweep file: give the checkpoint another name = ... in its [[checkpoint]] table, or copy "
            "the file under another name, to start new runs)"
        ) from None
    return resumed


def _list(device: str) -> int:
    """The recipe steps, and which recipes a plain run would measure on this machine, and why."""
    from bench.run.recipes_for_machine import choose_recipes
    from optim.__main__ import main as optim_main

    optim_main(["list"])
    _, choice = choose_recipes(None, device)
    print(f"\na plain `python -m bench` on this machine ({device}) measures: {', '.join(choice['included'])}")
    for recipe, why in choice["skipped"].items():
        print(f"  left out: {recipe} ({why})")
    return 0


def _interrupted(run_id: str) -> None:
    """Ctrl-C: what was measured is in the run directory; say how to go on."""
    print(f"interrupted; measured variants are kept. Continue with: python -m bench --resume {run_id}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        if args.recipes is not None or args.ckpt:
            raise InputError("--list shows every step and the recipes this machine measures by default; drop the rest")
        return _list(args.device)
    if args.search_minutes is not None and not args.search:
        raise InputError("--search-minutes applies to --search (the chains measured after the sweep); add --search")
    args.search_minutes = SEARCH_MINUTES if args.search_minutes is None else args.search_minutes
    if not 0 < args.search_minutes < math.inf:
        raise InputError(f"--search-minutes must be a positive number of minutes, got {args.search_minutes:g}")
    if args.no_retry_failed and not (args.resume or args.sweep_file):
        raise InputError(
            "--no-retry-failed applies to --resume (or a sweep file run again): a new run has no failed rows"
        )
    if args.sweep_file:
        return _sweep_file(args, argv)
    from bench.options import run_config_from_args
    from bench.run.resume import resume_config

    if args.resume:
        from bench.run.stages import check_stages

        cfg, run_dir = resume_config(args.resume, argv, parser)
        check_stages(cfg, run_dir)
    else:
        cfg = run_config_from_args(args)
        run_dir = _new_run_dir(cfg.run_id)
    if args.export:
        from bench.export import check_export_target

        check_export_target(args.export, run_dir)
    try:
        return _run(cfg, run_dir, args)
    except KeyboardInterrupt:
        _interrupted(cfg.run_id)
        raise SystemExit(130) from None


def _sweep_file(args: Any, argv: list[str]) -> int:
    from bench.run.grid import run_grid

    if args.ckpt or args.resume or args.run_id:
        raise InputError("--sweep-file names its checkpoints and run ids itself; pass no CKPT, --run-id or --resume")
    if args.export:
        raise InputError("--export takes one run; a sweep file makes one per checkpoint: export each with bench.export")
    at = next(i for i, a in enumerate(argv) if a == "--sweep-file" or a.startswith("--sweep-file="))
    rest = argv[:at] + argv[at + (1 if "=" in argv[at] else 2) :]
    return run_grid(Path(args.sweep_file), rest, _grid_plan, main)


def _export(run_dir: Path, out: str) -> bool:
    """Hand over the answer's variant. A failed export keeps the sweep's figures but fails the command, so
    ``python -m bench ... --export deploy/ && docker build deploy/`` never builds what was there before."""
    from bench.export import export_variant

    try:
        print(f"exported: {export_variant(run_dir, out=out)}")
        return True
    except InputError as exc:
        print(f"failed: not exported: {str(exc).splitlines()[0]}", file=sys.stderr)
        return False


def _run(cfg: Any, run_dir: Path, args: Any) -> int:
    from bench.report import write_reports
    from bench.run.executors import make_executor
    from bench.run.run_dir import RunLock
    from bench.run.stages import run_stages
    from bench.run.sweep import run_sweep, sweep_verdict

    executor = make_executor(cfg)
    executor.check()
    with RunLock(run_dir, cfg.run_id):
        (run_dir / "run_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        scen = ", ".join(f"{s.name}@b{s.batch_size}" for s in cfg.scenarios)
        print(
            f"run {cfg.run_id}: {len(cfg.recipes)} variant{'s' * (len(cfg.recipes) != 1)} of {cfg.load.describe()} "
            f"on {cfg.device} "
            f"({executor.name}), {cfg.threads} threads, scenarios {scen}{' (--precise)' if cfg.precise else ''} "
            f"-> {run_dir}",
            file=sys.stderr,
        )
        if cfg.recipe_choice.get("summary"):
            print(f"recipes: {cfg.recipe_choice['summary']}", file=sys.stderr)
        rows = run_sweep(cfg, run_dir, executor, progress=not args.no_progress, retry_failed=not args.no_retry_failed)
        if args.search:
            from bench.results_io import RESULTS_FILE, read_rows
            from bench.run.search import run_search

            cfg = run_search(cfg, run_dir, executor, args.search_minutes, progress=not args.no_progress)
            rows = read_rows(run_dir / RESULTS_FILE)
        rows = run_stages(cfg, run_dir, rows, progress=not args.no_progress)
        outputs = write_reports(run_dir, rows, cfg)
    print(outputs.table)
    print()
    print(outputs.answer)
    for name, path in outputs.files.items():
        print(f"{name}: {path}")
    exported = _export(run_dir, args.export) if args.export else True
    code, why = sweep_verdict(rows, cfg.device)
    if why:
        print(f"failed: {why}", file=sys.stderr)
    return code or (0 if exported else 1)
