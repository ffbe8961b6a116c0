"""``--resume RUN_ID``: the stored run configuration comes back, and options that would change what the run
measured are refused (a resumed run must measure what the interrupted one did)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.errors import InputError

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
    "search",
    "search_minutes",
}


def _explicit(args: Any, parser: Any) -> dict[str, Any]:
    """Options the user typed (those that differ from their defaults)."""
    return {k: v for k, v in vars(args).items() if v != parser.get_default(k) and v is not None and v is not False}


def resume_config(args: Any, parser: Any) -> tuple[Any, Path]:
    """The stored configuration of ``--resume RUN_ID``, refusing options that would change what it measured."""
    from bench.config import RunConfig
    from bench.run.run_dir import run_dir

    directory = run_dir(args.resume)
    path = directory / "run_config.json"
    if not path.is_file():
        raise InputError(
            f"cannot resume {args.resume!r}: {path} not found (run ids are folder names under results/runs/)"
        )
    try:
        stored = RunConfig.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise InputError(f"cannot resume {args.resume!r}: {path} is not valid JSON ({exc.msg})") from None
    given = _explicit(args, parser)
    changed = sorted(k for k in given if k not in RESUME_FREE and not _same_as_stored(k, given[k], stored))
    if changed:
        names = ", ".join("--" + k.replace("_", "-") if k != "ckpt" else "CKPT" for k in changed)
        raise InputError(
            f"--resume {args.resume}: {names} would change what this run measured; start a new run (--run-id) instead"
        )
    if stored.load.factory and given.get("model") != stored.load.factory:
        raise InputError(
            f"--resume {args.resume}: the run loads the model factory {stored.load.factory}; repeat "
            f"--model {stored.load.factory} to confirm importing it"
        )
    changes = {k: given[k] for k in ("executor", "ray_address", "ray_target") if k in given}
    if "timeout" in given:
        changes["timeout_s"] = float(given["timeout"])
    if "wandb" in given:
        changes["wandb"] = True
    return stored.replace(**changes).validated(), directory


def _same_as_stored(option: str, value: Any, cfg: Any) -> bool:
    load = cfg.load
    if option == "ckpt":
        return load.path is not None and Path(value).expanduser().absolute() == Path(load.path)
    mapping = {
        "model": load.model,
        "num_classes": load.num_classes,
        "img_size": load.img_size,
        "data": cfg.data_spec,
        "data_dir": cfg.data_dir,
        "device": cfg.device,
        "threads": cfg.threads,
        "seed": cfg.seed,
        "calib_size": cfg.calib_size,
        "max_drop": cfg.max_drop,
        "rounds": cfg.rounds,
        "replicas": cfg.replicas,
        "quick": cfg.quick,
        "precise": cfg.precise,
        "skip_bad_images": cfg.skip_bad_images,
        "unpaired": not cfg.paired,
    }
    return option in mapping and mapping[option] == value
