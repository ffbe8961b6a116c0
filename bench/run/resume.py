"""``--resume RUN_ID`` (and a sweep file run again): the stored run configuration comes back, and options given
again are compared with it field by field, as each field's definition says (:mod:`bench.config`).

The stored configuration is written back as options (:meth:`~bench.config.RunConfig.to_cli_args`), the options
given now are laid over them, and the result goes through the same :func:`~bench.options.run_config_from_args` as
a new run: a field that defines what was measured and now differs is refused, naming its option; fields that say
how the run is watched, or that change only the answer (``--max-drop``), take the new value. A staged scenario
(``--serve``) may be added or changed: it measures the variants the sweep saved, after it. Recipes may be added
(never removed): each new one is timed against fp32 at its own moments, as a failed one measured again is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import InputError

RESUME_OPTIONS = ("--resume",)  # the options that name the run itself


def stored_config(run_id: str) -> tuple[Any, Path]:
    """The run configuration stored in run ``run_id``, read strictly."""
    from bench.config import RunConfig
    from bench.run.run_dir import run_dir

    directory = run_dir(run_id)
    path = directory / "run_config.json"
    if not path.is_file():
        raise InputError(f"cannot resume {run_id!r}: {path} not found (run ids are folder names under results/runs/)")
    try:
        return RunConfig.from_dict(json.loads(path.read_text())), directory
    except json.JSONDecodeError as exc:
        raise InputError(f"cannot resume {run_id!r}: {path} is not valid JSON ({exc.msg})") from None


def _without_resume(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in RESUME_OPTIONS:
            skip = True
            continue
        if any(arg.startswith(f"{name}=") for name in RESUME_OPTIONS):
            continue
        out.append(arg)
    return out


def resume_config(run_id: str, argv: Sequence[str], parser: Any) -> tuple[Any, Path]:
    """The configuration run ``run_id`` continues with, given the options ``argv`` typed now."""
    from bench.config import FIXED
    from bench.options import run_config_from_args
    from bench.run.executors import executor_spec
    from optim.options import load_checked

    typed = _without_resume(argv)
    given = parser.parse_args(typed)  # first: a --results among the options says where the run is
    stored, directory = stored_config(run_id)
    if stored.load.factory and given.model != stored.load.factory:
        raise InputError(
            f"--resume {run_id}: the run loads the model factory {stored.load.factory}; repeat "
            f"--model {stored.load.factory} to confirm importing it"
        )
    base = stored.to_cli_args() + executor_spec(stored.executor).to_cli(stored.executor_options)
    if given.ckpt and stored.load.path:
        base = base[1:]  # the checkpoint typed now stands in for the stored one (and is compared with it)
    args = parser.parse_args(base + typed)
    checked = load_checked(args)
    _same_checkpoint(run_id, directory, checked[1].info.sha256)
    fresh = run_config_from_args(args, run_id=stored.run_id, checked=checked)
    changed = stored.changed_fields(fresh, FIXED)
    if "scenarios" in changed and _swept(stored.scenarios) == _swept(fresh.scenarios):
        changed.remove("scenarios")  # only a staged scenario (--serve) differs: it runs after the sweep, on its copies
    if "recipes" in changed and set(stored.recipes) <= set(fresh.recipes):
        changed.remove("recipes")  # recipes added: measured against fp32 at their own moments, like a failed retry
    if changed:
        names = ", ".join(dict.fromkeys(o for name in changed for o in _options(stored, fresh, name)))
        raise InputError(
            f"--resume {run_id}: {names} would change what this run measured "
            f"({'; '.join(_difference(stored, fresh, name) for name in changed)}); start a new run (--run-id) instead"
        )
    choice = stored.recipe_choice if fresh.recipes == stored.recipes else fresh.recipe_choice
    return fresh.replace(recipe_choice=choice, resumed=_history(stored, fresh)), directory


def _history(stored: Any, fresh: Any) -> tuple[Any, ...]:
    """run_config.json holds the settings of the latest start; rows measured before it ran with the earlier ones,
    so each start that changed a free field (executor, timeout, ...), the budget or added recipes is kept, with what
    it changed."""
    import datetime

    from bench.config import ANSWER, FREE

    names = [n for policy in (FREE, ANSWER) for n in stored.changed_fields(fresh, policy) if n != "run_id"]
    names += ["recipes"] if fresh.recipes != stored.recipes else []
    if not names:
        return stored.resumed
    old, new = stored.to_dict(), fresh.to_dict()
    at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (*stored.resumed, {"at": at, "changed": {n: [old[n], new[n]] for n in names}})


def _same_checkpoint(run_id: str, directory: Path, sha256: str | None) -> None:
    """Refuse a checkpoint whose content is not the one the run's rows measured: the same path holding another
    file (retrained, overwritten) would mix two models' figures in one leaderboard."""
    from bench.results_io import RESULTS_FILE, read_rows

    path = directory / RESULTS_FILE
    measured = (
        {str(r["checkpoint_sha256"]) for r in read_rows(path) if r.get("checkpoint_sha256")}
        if path.is_file()
        else set()
    )
    if sha256 and measured and sha256 not in measured:
        raise InputError(
            f"--resume {run_id}: the checkpoint is not the one this run measured (sha256 {sha256[:12]} now, "
            f"{', '.join(sorted(s[:12] for s in measured))} in its rows): it changed since; start a new run (--run-id)"
        )


def _swept(scenarios: Sequence[Any]) -> tuple[Any, ...]:
    """The scenarios the sweep itself measures: those a resumed run must keep as they were."""
    from bench.scenarios import get

    return tuple(s for s in scenarios if not get(s.name).staged)


def _options(stored: Any, fresh: Any, name: str) -> list[str]:
    """The options that changed field ``name``: within the load spec, only those whose value differs."""
    from bench.config import field_options

    return list(stored.load.differences(fresh.load)) if name == "load" else field_options(name)


def _difference(stored: Any, fresh: Any, name: str) -> str:
    old, new = getattr(stored, name), getattr(fresh, name)
    if name == "load":
        return "; ".join(f"{option} {change}" for option, change in old.differences(new).items())
    if name == "scenarios":
        return (
            "scenarios "
            + ", ".join(f"{s.name}@b{s.batch_size}" for s in old)
            + " -> "
            + ", ".join(f"{s.name}@b{s.batch_size}" for s in new)
        )
    text = {tuple: lambda v: ",".join(v)}.get(type(old), repr)
    return f"{name} {text(old)} -> {text(new)}"
