"""From options to a run: the one function that turns parsed options into a :class:`~bench.config.RunConfig`.

Every entry point of ``bench`` (``python -m bench``, ``pytest bench``, ``python -m bench.profile``, the gate's A/B
mode and its simulator) declares its options with the pieces here and calls :func:`run_config_from_args`, so the
checks (:mod:`optim.options`), the defaults and the way a stored run is compared with new options are the same
everywhere. A command without an option (the profiler has no ``--recipes``) gets the run configuration's default.
"""

from __future__ import annotations

import time
from typing import Any

from bench.config import CPU_REPLICAS, PRECISE_REPLICAS, PRECISE_ROUNDS, QUICK_ROUNDS, SWEEP_ROUNDS, RunConfig
from data.errors import InputError


def add_run_arguments(parser: Any) -> None:
    """What ``python -m bench`` measures and how: recipes, budget, pairing, scenarios, executor, trackers."""
    from bench import scenarios
    from bench.run import executors

    parser.add_argument("--recipes", help="comma-separated recipes, or 'all' (default: chosen for this machine)")
    parser.add_argument("--max-drop", type=float, default=1.0, help="top-1 budget in points for the answer (default 1)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a variant's build or measurement may take")
    parser.add_argument(
        "--unpaired", action="store_true", help="time each variant alone instead of interleaved with warm fp32"
    )
    parser.add_argument(
        "--rounds", type=int, help=f"interleaved rounds per variant and scenario (default {SWEEP_ROUNDS})"
    )
    parser.add_argument(
        "--replicas", type=int, help="timed processes per variant (default: 2 on CPU where loading does not compile)"
    )
    parser.add_argument(
        "--precise",
        action="store_true",
        help=f"tighter speedups for about 1.5x the time: {PRECISE_ROUNDS} rounds, {PRECISE_REPLICAS} processes a side, "
        "one variant at a time against fp32",
    )
    parser.add_argument(
        "--wandb", action="store_true", help="log the sweep to Weights & Biases (offline without a key)"
    )
    scenarios.add_arguments(parser)
    executors.add_arguments(parser)


def check_run_options(args: Any) -> None:
    """The options only a measuring command has; each check once, whichever command parsed them."""
    from bench.measure.paired_stats import MIN_ROUNDS

    for name in ("timeout", "replicas"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise InputError(f"--{name} must be positive, got {value:g}")
    max_drop = getattr(args, "max_drop", None)
    if max_drop is not None and not max_drop >= 0:
        raise InputError(f"--max-drop must be >= 0 points, got {max_drop:g}")
    precise, quick = getattr(args, "precise", False), getattr(args, "quick", False)
    if precise and quick:
        raise InputError("--precise and --quick exclude each other (one asks for more timing, the other for less)")
    if precise and getattr(args, "unpaired", False):
        raise InputError("--precise refines the interleaved sweep; it does nothing with --unpaired")
    rounds = getattr(args, "rounds", None)
    if rounds is not None and rounds < MIN_ROUNDS:
        raise InputError(f"--rounds must be >= {MIN_ROUNDS} (fewer rounds say nothing), got {rounds}")
    recipes = getattr(args, "recipes", None)
    if recipes is not None and not recipes.strip():
        raise InputError("--recipes is empty; name recipes (see --list) or leave the option out for the default")


def run_config_from_args(
    args: Any, run_id: str | None = None, recipes: tuple[str, ...] | None = None, checked: Any = None
) -> RunConfig:
    """Check the options and build the run configuration (the checkpoint and the data are read once, here).

    ``recipes``: fixed by the command (the profiler's one recipe) instead of ``--recipes``; ``checked``: the
    (load spec, loaded model) the command has from :func:`optim.options.load_checked` already.
    """
    from bench import scenarios
    from bench.run.executors import options_from_args
    from bench.run.recipes_for_machine import choose_recipes
    from bench.run.run_dir import check_run_id
    from optim.options import check_build_options, load_checked, settings_from_args

    check_build_options(args)
    check_run_options(args)
    device = getattr(args, "device", "cpu") or "cpu"
    executor, executor_options = options_from_args(args) if hasattr(args, "executor") else ("local", {})
    load, loaded = checked or load_checked(args)
    runs = scenarios.configs_for(args, device)
    settings = settings_from_args(args, loaded, max((s.batch_size for s in runs), default=16))
    if recipes is None:
        chosen, choice = choose_recipes(getattr(args, "recipes", None), device)
    else:
        chosen, choice = tuple(recipes), {"mode": "explicit", "skipped": {}, "summary": ", ".join(recipes)}
    precise, quick = bool(getattr(args, "precise", False)), settings.quick
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{_tag(loaded.info.arch)}-{device}"
    return RunConfig(
        load=load,
        recipes=tuple(chosen),
        scenarios=runs,
        device=device,
        data_spec=settings.data_spec,
        data_dir=settings.data_dir,
        skip_bad_images=settings.skip_bad_images,
        threads=settings.threads,
        seed=settings.seed,
        calib_size=settings.calib_size,
        quick=quick,
        max_drop=float(getattr(args, "max_drop", 1.0)),
        timeout_s=float(getattr(args, "timeout", None) or 1800.0),
        run_id=check_run_id(run_id or getattr(args, "run_id", None) or stamp),
        paired=not getattr(args, "unpaired", False),
        rounds=getattr(args, "rounds", None) or _default_rounds(precise, quick),
        replicas=getattr(args, "replicas", None),
        cpu_replicas=PRECISE_REPLICAS if precise else CPU_REPLICAS,
        precise=precise,
        wandb=bool(getattr(args, "wandb", False)),
        executor=executor,
        executor_options=executor_options,
        recipe_choice=choice,
    ).validated()


def _default_rounds(precise: bool, quick: bool) -> int:
    return PRECISE_ROUNDS if precise else QUICK_ROUNDS if quick else SWEEP_ROUNDS


def _tag(arch: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in (arch or "model"))[:40]


def quick_run_config(load: Any, recipe: str, timeout_s: float, run_id: str, data: str | None = None) -> RunConfig:
    """The gate's A/B and simulator runs: one recipe on CPU with the full timing budget (a slice needs several calls
    for its median to mean something), marked quick because its builds need no long fine-tuning."""
    import argparse

    import models

    args = argparse.Namespace(device="cpu", quick=False, timeout=timeout_s, data=data)
    cfg = run_config_from_args(args, run_id=run_id, recipes=(recipe,), checked=(load, models.load(load)))
    return cfg.replace(quick=True)
