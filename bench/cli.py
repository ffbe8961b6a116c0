"""``python -m bench``: measure every variant of a checkpoint and print the leaderboard and the answer.

This module only turns the command line into a :class:`~bench.config.RunConfig` (or reads one back with
``--resume``) and hands it to the sweep; everything else happens in :mod:`bench.run` and :mod:`bench.report`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.run.resume import resume_config
from models.cli_args import add_load_arguments, load_spec_from_args, placeholder_note
from models.errors import ArgumentParser, InputError, MissingDependencyError

# Options that may differ on --resume: they change how the run is watched, not what it measures.
RESUME_FREE = {
    "resume",
    "timeout",
    "wandb",
    "no_progress",
    "no_retry_failed",
    "executor",
    "ray_address",
    "ray_target",
    "sweep_file",
}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m bench", description="Build and benchmark deployment variants of a checkpoint.")
    add_load_arguments(p)
    p.add_argument("--data", help="digits | ImageFolder dir | torch/<name> (default: the checkpoint's own)")
    p.add_argument("--data-dir", help="root for timm dataset names")
    p.add_argument("--skip-bad-images", action="store_true", help="leave unreadable images out instead of stopping")
    p.add_argument(
        "--recipes", default=None, help="comma-separated recipes, or 'all' (default: chosen for this machine)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quick", action="store_true", help="short warm-up and timing: a smoke run, not for decisions")
    p.add_argument("--threads", type=int, help="threads for every intra-op pool (default: CPUs available)")
    p.add_argument("--batch-size", type=int, help="throughput batch (default 16 on CPU, 128 on CUDA)")
    p.add_argument("--max-drop", type=float, default=1.0, help="top-1 budget in points for the answer (default 1.0)")
    p.add_argument(
        "--calib-size",
        type=int,
        help="calibration images from the train split (default 512; 64 with random weights: nothing to keep)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800, help="seconds a variant's build or measurement may take")
    p.add_argument("--run-id", help="name of a new run directory under results/runs/")
    p.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run; finished variants are skipped")
    p.add_argument("--no-retry-failed", action="store_true", help="on --resume, keep failed variants as they are")
    p.add_argument("--wandb", action="store_true", help="log the sweep to Weights & Biases (offline without a key)")
    p.add_argument("--list", action="store_true", help="list recipe steps and default recipes, then exit")
    p.add_argument(
        "--unpaired",
        action="store_true",
        help="time each variant alone, one after another, instead of interleaved with the warm fp32 reference",
    )
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per variant and scenario (default 60)")
    p.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="timed processes per variant (default: 2 on CPU where the saved variant loads without compiling, else 1)",
    )
    p.add_argument(
        "--precise",
        action="store_true",
        help="tighter batch-1 speedups for about 1.5x the sweep time: 120 rounds and 4 loaded processes per variant",
    )
    p.add_argument(
        "--executor", default="local", help="local (default) or ray (a Ray cluster: pip install '.[cluster]')"
    )
    p.add_argument("--ray-address", help="Ray cluster address (auto, ray://HOST:PORT; default: auto)")
    p.add_argument("--ray-target", help="only nodes with this custom resource/label (e.g. t4)")
    p.add_argument("--sweep-file", help="a TOML grid of checkpoints x recipes x targets: one run directory each")
    p.add_argument("--search", action="store_true", help="after the sweep, measure chains around the fastest variants")
    p.add_argument("--search-minutes", type=float, default=30.0, help="time budget of --search (default 30)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    return p


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise InputError(f"{name} must be positive, got {value:g}")


def _check_options(args: Any) -> None:
    from bench.config import DEVICES, EXECUTORS
    from bench.measure.fingerprint import available_cpus
    from bench.measure.paired_stats import MIN_ROUNDS

    if args.device not in DEVICES:
        raise InputError(f"unknown device {args.device!r}; choose one of: {', '.join(DEVICES)}")
    if args.executor not in EXECUTORS:
        raise InputError(f"unknown executor {args.executor!r}; choose one of: {', '.join(EXECUTORS)}")
    for name in ("threads", "batch_size", "calib_size", "timeout", "replicas"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.max_drop < 0:
        raise InputError(f"--max-drop must be >= 0, got {args.max_drop:g}")
    if args.search_minutes <= 0:
        raise InputError(f"--search-minutes must be positive, got {args.search_minutes:g}")
    if args.precise and args.quick:
        raise InputError("--precise and --quick exclude each other (one asks for more timing, the other for less)")
    if args.precise and args.unpaired:
        raise InputError("--precise refines the interleaved sweep; it does nothing with --unpaired")
    if args.rounds is not None and args.rounds < MIN_ROUNDS:
        raise InputError(f"--rounds must be >= {MIN_ROUNDS} (fewer rounds say nothing), got {args.rounds}")
    cpus = available_cpus()
    if args.threads and args.threads > cpus:
        raise InputError(f"--threads {args.threads} is more than the {cpus} CPUs this process may use")
    if args.recipes is not None and not args.recipes.strip():
        raise InputError("--recipes is empty; name recipes (see --list) or leave the option out for the default")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise MissingDependencyError(
                "--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)"
            )


def _check_input_size(loaded: Any, img_size: int | None) -> None:
    """An explicit ``--img-size`` the model cannot take is bad input, found here rather than in every worker."""
    if not img_size:
        return
    import torch

    try:
        with torch.inference_mode():
            loaded.model(torch.zeros(1, 3, img_size, img_size))
    except Exception as exc:  # noqa: BLE001 - any failure of the forward means the size does not work
        first = str(exc).strip().splitlines()[0][:150] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--img-size {img_size}: {loaded.info.arch} cannot take this input size ({first})") from None
    info = getattr(loaded.model, "feature_info", None)
    stride = info[-1].get("reduction") if isinstance(info, list) and info and isinstance(info[-1], dict) else None
    if stride and img_size < stride:
        raise InputError(
            f"--img-size {img_size}: {loaded.info.arch} cannot take this input size: it is smaller than the model's "
            f"total stride ({stride} px), so its last layers would see padding only; use at least {stride}"
        )


def config_from_args(args: Any) -> Any:
    """Validate the command line and build the run configuration (checkpoint and data are read once here)."""
    import data
    import models
    from bench.config import CALIB_SIZE, RANDOM_INIT_CALIB_SIZE, RunConfig
    from bench.measure.fingerprint import default_threads
    from bench.measure.timing import default_scenarios
    from bench.run.pairing import PRECISE_REPLICAS, PRECISE_ROUNDS, QUICK_ROUNDS, SWEEP_PLAN
    from bench.run.recipes_for_machine import choose_recipes
    from bench.run.run_dir import check_run_id
    from bench.run.sides import CPU_REPLICAS

    _check_options(args)
    load = load_spec_from_args(args)
    loaded = models.load(load)
    if note := placeholder_note(loaded.info):
        print(note, file=sys.stderr)
    _check_input_size(loaded, args.img_size)
    info = loaded.info
    data_spec = data.resolve_spec(args.data or info.data_spec or "digits")
    report = data.check_spec(data_spec, info, args.data_dir, args.skip_bad_images)
    if report:
        print(report, file=sys.stderr)
    recipes, choice = choose_recipes(args.recipes, args.device)
    run_id = (
        check_run_id(args.run_id)
        if args.run_id
        else f"{time.strftime('%Y%m%d-%H%M%S')}-{_tag(info.arch)}-{args.device}"
    )
    return RunConfig(
        load=load,
        recipes=tuple(recipes),
        scenarios=default_scenarios(args.quick, args.device, args.batch_size),
        device=args.device,
        data_spec=data_spec,
        data_dir=data.resolve_dir(args.data_dir),
        skip_bad_images=args.skip_bad_images,
        threads=args.threads or default_threads(),
        seed=args.seed,
        calib_size=args.calib_size or (CALIB_SIZE if info.has_weights else RANDOM_INIT_CALIB_SIZE),
        quick=args.quick,
        max_drop=args.max_drop,
        timeout_s=float(args.timeout),
        run_id=run_id,
        paired=not args.unpaired,
        rounds=args.rounds or (PRECISE_ROUNDS if args.precise else QUICK_ROUNDS if args.quick else SWEEP_PLAN.rounds),
        replicas=args.replicas,
        cpu_replicas=PRECISE_REPLICAS if args.precise else CPU_REPLICAS,
        precise=args.precise,
        wandb=args.wandb,
        executor=args.executor,
        ray_address=args.ray_address,
        ray_target=args.ray_target,
        recipe_choice=choice,
    ).validated()


def _tag(arch: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in (arch or "model"))[:40]


def _new_run_dir(run_id: str) -> Path:
    from bench.run.run_dir import has_content, run_dir

    directory = run_dir(run_id)
    if has_content(directory):
        raise InputError(
            f"run {run_id!r} already exists in {directory}; continue it with --resume {run_id}, or pick a new --run-id"
        )
    return directory


def _grid_plan(stem: str, new: list[str], resumed: list[str]) -> list[str]:
    """Check one checkpoint of a sweep file before any is measured; the arguments it will run with."""
    parser = build_parser()
    if new:
        config_from_args(parser.parse_args(new))
        return new
    resume_config(parser.parse_args(resumed), parser)
    return resumed


def make_executor(cfg: Any) -> Any:
    if cfg.executor == "ray":
        from bench.run.ray_executor import RayExecutor

        return RayExecutor(cfg)
    from bench.run.local import LocalExecutor

    return LocalExecutor()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        from optim.__main__ import main as optim_main

        return optim_main(["list"])
    if args.sweep_file:
        from bench.run.grid import run_grid

        if args.ckpt or args.resume or args.run_id:
            raise InputError(
                "--sweep-file names its checkpoints and run ids itself; pass no CKPT, --run-id or --resume"
            )
        rest = list(argv if argv is not None else sys.argv[1:])
        at = next(i for i, a in enumerate(rest) if a == "--sweep-file" or a.startswith("--sweep-file="))
        rest = rest[:at] + rest[at + (1 if "=" in rest[at] else 2) :]
        return run_grid(Path(args.sweep_file), rest, _grid_plan, main)
    from bench.report import write_reports
    from bench.run.run_dir import RunLock
    from bench.run.sweep import run_sweep, sweep_verdict

    if args.resume:
        cfg, run_dir = resume_config(args, parser)
    else:
        cfg = config_from_args(args)
        run_dir = _new_run_dir(cfg.run_id)
    executor = make_executor(cfg)
    with RunLock(run_dir, cfg.run_id):
        if not args.resume:
            (run_dir / "run_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        scen = ", ".join(f"{s.name}@b{s.batch_size}" for s in cfg.scenarios)
        print(
            f"run {cfg.run_id}: {len(cfg.recipes)} variants of {cfg.load.describe()} on {cfg.device} "
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
        outputs = write_reports(run_dir, rows, cfg)
    print(outputs.table)
    print()
    print(outputs.answer)
    for name, path in outputs.files.items():
        print(f"{name}: {path}")
    code, why = sweep_verdict(rows, cfg.device)
    if why:
        print(f"failed: {why}", file=sys.stderr)
    return code
