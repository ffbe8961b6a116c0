"""``python -m bench``: measure every variant of a checkpoint and print the leaderboard and the answer."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from models.errors import ArgumentParser, InputError, MissingDependencyError

DEVICES = ("cpu", "cuda")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m bench", description="Build and benchmark deployment variants of a timm checkpoint."
    )
    p.add_argument("ckpt", nargs="?", help="checkpoint (default: the embedded digits model, trained once and cached)")
    p.add_argument("--model", help="timm architecture (needed for plain state dicts and --random-init)")
    p.add_argument("--num-classes", type=int, help="class count (checked against the checkpoint)")
    p.add_argument("--random-init", action="store_true", help="no checkpoint: random weights, speed only")
    p.add_argument("--img-size", type=int, help="input resolution (default: the checkpoint's)")
    p.add_argument("--data", help="digits | ImageFolder dir | torch/<name> (default: the checkpoint's own)")
    p.add_argument("--data-dir", help="root for timm dataset names")
    p.add_argument("--recipes", default=None, help="comma-separated recipes, or 'all' (default: all this machine runs)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quick", action="store_true", help="short warm-up and timing: a smoke run, not for decisions")
    p.add_argument("--threads", type=int, help="threads for every intra-op pool (default: CPUs available)")
    p.add_argument("--batch-size", type=int, help="throughput batch (default 16 on CPU, 128 on CUDA)")
    p.add_argument("--max-drop", type=float, default=1.0, help="top-1 budget in points for the answer (default 1.0)")
    p.add_argument("--calib-size", type=int, default=512, help="calibration images from the train split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per variant before it is recorded as failed")
    p.add_argument("--run-id", help="name of the run directory under results/runs/")
    p.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run; finished variants are skipped")
    p.add_argument("--wandb", action="store_true", help="log the sweep to Weights & Biases (offline without a key)")
    p.add_argument("--list", action="store_true", help="list recipe steps and default recipes, then exit")
    p.add_argument(
        "--unpaired",
        action="store_true",
        help="time each variant alone, one after another, instead of interleaved with the warm fp32 reference",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds per variant and scenario (default 60); the timing budget is split over them",
    )
    p.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="timed processes per variant, the rounds spread over them; above 1 they load what a separate builder "
        "saved (default: 2 on CPU where the saved variant loads without compiling again, else 1: the builder)",
    )
    p.add_argument(
        "--precise",
        action="store_true",
        help="tighter speedups at batch 1 for about 1.5x the sweep time: 120 rounds and 4 loaded processes per "
        "variant on CPU (--rounds/--replicas still override)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise InputError(f"{name} must be positive, got {value:g}")


def _config_from_args(args: Any) -> dict[str, Any]:
    """Validate the command line and return the plain run configuration (also saved for --resume)."""
    import models
    from bench.fingerprint import default_threads
    from models.default import ensure_default_checkpoint
    from optim.registry import default_recipes

    if args.device not in DEVICES:
        raise InputError(f"unknown device {args.device!r}; choose one of: {', '.join(DEVICES)}")
    for name in ("num_classes", "img_size", "threads", "batch_size", "calib_size", "timeout", "replicas"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.max_drop < 0:
        raise InputError(f"--max-drop must be >= 0, got {args.max_drop:g}")
    from bench.paired import MIN_ROUNDS
    from bench.sweep_paired import PRECISE_ROUNDS, SWEEP_PLAN

    if args.precise and args.quick:
        raise InputError("--precise and --quick exclude each other (one asks for more timing, the other for less)")
    if args.precise and args.unpaired:
        raise InputError("--precise refines the interleaved sweep; it does nothing with --unpaired")
    if args.rounds is not None and args.rounds < MIN_ROUNDS:
        raise InputError(f"--rounds must be >= {MIN_ROUNDS} (fewer rounds say nothing), got {args.rounds}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise MissingDependencyError(
                "--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)"
            )
    if args.random_init and args.ckpt:
        raise InputError("--random-init and a checkpoint exclude each other")
    if args.random_init and not args.model:
        raise InputError("--random-init needs --model ARCH (any timm name)")
    ckpt = args.ckpt
    if ckpt is None and not args.random_init:
        if args.model:
            raise InputError(f"--model {args.model} without a checkpoint: pass CKPT, or --random-init for speed only")
        ckpt = str(ensure_default_checkpoint())
    loaded = models.load(ckpt, arch=args.model, num_classes=args.num_classes, img_size=args.img_size)
    info = loaded.info
    data_spec = args.data or info.data_spec or "digits"
    import data

    data.build_datasets(data_spec, info.data_config, args.data_dir)  # fails fast (exit 2) on a bad spec
    recipes_text = args.recipes or "all"
    from bench.sweep import validate_recipes
    from optim.recipe import parse_list

    recipes = validate_recipes([str(r) for r in parse_list(recipes_text, default_recipes(args.device))])
    arch_tag = (info.arch or "model").replace("/", "_")
    run_id = args.run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{arch_tag}-{args.device}"
    return {
        "ckpt": ckpt,
        "arch": args.model if args.random_init or not ckpt else None,
        "num_classes": args.num_classes,
        "img_size": args.img_size,
        "data_spec": data_spec,
        "data_dir": args.data_dir,
        "recipes": recipes,
        "device": args.device,
        "quick": args.quick,
        "threads": args.threads or default_threads(),
        "batch_size": args.batch_size,
        "max_drop": args.max_drop,
        "calib_size": args.calib_size,
        "seed": args.seed,
        "timeout": args.timeout,
        "run_id": run_id,
        "wandb": args.wandb,
        "paired": not args.unpaired,
        "rounds": args.rounds or (PRECISE_ROUNDS if args.precise else SWEEP_PLAN.rounds),
        "replicas": args.replicas,
        "precise": args.precise,
    }


def _resume_config(run_id: str) -> dict[str, Any]:
    from models.default import results_dir

    path = results_dir() / "runs" / run_id / "run_config.json"
    if not path.is_file():
        raise InputError(f"cannot resume {run_id!r}: {path} not found (run ids are folder names under results/runs/)")
    return json.loads(path.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        from optim.__main__ import main as optim_main

        return optim_main(["list"])

    from bench.executor import LocalProcessExecutor
    from bench.report import write_reports
    from bench.sweep import SweepConfig, run_sweep
    from bench.timing import default_scenarios
    from models.default import results_dir

    conf = _resume_config(args.resume) if args.resume else _config_from_args(args)
    run_dir = results_dir() / "runs" / conf["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run_config.json").write_text(json.dumps(conf, indent=2))
    scenarios = default_scenarios(conf["quick"], conf["device"], conf["batch_size"])
    cfg = SweepConfig(
        recipes=tuple(conf["recipes"]),
        device=conf["device"],
        run_dir=run_dir,
        run_id=conf["run_id"],
        scenarios=scenarios,
        ckpt=conf["ckpt"],
        arch=conf["arch"],
        num_classes=conf["num_classes"],
        img_size=conf["img_size"],
        data_spec=conf["data_spec"],
        data_dir=conf["data_dir"],
        threads=conf["threads"],
        seed=conf["seed"],
        calib_size=conf["calib_size"],
        quick=conf["quick"],
    )
    print(
        f"run {conf['run_id']}: {len(cfg.recipes)} variants on {cfg.device}, {cfg.threads} threads, "
        f"scenarios {', '.join(f'{s.name}@b{s.batch_size}' for s in scenarios)}"
        f"{' (--precise)' if conf.get('precise') else ''} -> {run_dir}",
        file=sys.stderr,
    )
    if conf.get("paired", True):
        import dataclasses

        from bench.replicas import CPU_REPLICAS
        from bench.sweep_paired import PRECISE_REPLICAS, SWEEP_PLAN, run_paired_sweep

        plan = dataclasses.replace(SWEEP_PLAN, rounds=conf.get("rounds") or SWEEP_PLAN.rounds)
        # A run configured before --replicas existed was measured with one process a side: resume it so.
        replicas = conf.get("replicas", 1)
        rows = run_paired_sweep(
            cfg,
            timeout_s=conf["timeout"],
            progress=not args.no_progress,
            plan=plan,
            replicas=replicas,
            cpu_replicas=PRECISE_REPLICAS if conf.get("precise") else CPU_REPLICAS,
        )
    else:
        executor = LocalProcessExecutor(timeout_s=conf["timeout"], log_dir=run_dir / "logs")
        rows = run_sweep(cfg, executor, progress=not args.no_progress)
    outputs = write_reports(run_dir, rows, conf, wandb_enabled=conf.get("wandb", False))
    print(outputs.table)
    print()
    print(outputs.answer)
    for name, path in outputs.files.items():
        print(f"{name}: {path}")
    return 0
