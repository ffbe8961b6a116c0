"""``python -m bench --sweep-file grid.toml``: several checkpoints (x recipes x targets) in one command.

A team with a handful of checkpoints sweeps them all with one file; each checkpoint gets its own run directory
``<file stem>-<checkpoint name>``, so its leaderboard and answer stand alone. Running the same file again continues
the grid: finished checkpoints only report again, interrupted ones resume, failed variants are measured again.

```toml
recipes = ["fp32", "ptq(ort)", "prune(0.5)+ort-int8"]   # any python -m bench option, by its long name
quick = true
targets = ["t4", "xeon"]                                  # with --executor ray: one sweep per kind of node

[[checkpoint]]
path = "dogs/resnet152.pth"
model = "resnet152"
data = "dogs/images"

[[checkpoint]]
path = "food/effnet.ckpt"                                 # options here override the file's for this checkpoint
```

Every checkpoint's options are checked before anything is measured: a bad one stops the grid with one line that
names it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tomllib

from models.errors import InputError

RESERVED = {"checkpoint", "sweep_file", "run_id", "resume", "list"}


def _options(table: dict[str, Any], where: str) -> list[str]:
    """A TOML table of options as command-line arguments (``img-size = 32`` -> ``--img-size 32``)."""
    out: list[str] = []
    for key, value in table.items():
        name = key.replace("_", "-")
        if name.replace("-", "_") in RESERVED or name == "path":
            continue
        if key == "targets":
            value = ",".join(value) if isinstance(value, list) else value
            name = "ray-target"
        if isinstance(value, bool):
            if value:
                out.append(f"--{name}")
        elif isinstance(value, list):
            out += [f"--{name}", ",".join(str(v) for v in value)]
        elif isinstance(value, int | float | str):
            out += [f"--{name}", str(value)]
        else:
            raise InputError(f"{where}: option {key!r} must be a string, number, boolean or list")
    return out


def read_grid(path: Path) -> tuple[list[str], list[tuple[str, str, list[str]]]]:
    """(options for every checkpoint, [(run name, checkpoint path, its own options)]) from a sweep file."""
    try:
        grid = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"sweep file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid TOML ({exc})") from None
    checkpoints = grid.get("checkpoint")
    if not isinstance(checkpoints, list) or not checkpoints or not all(isinstance(c, dict) for c in checkpoints):
        raise InputError(f"{path}: list the checkpoints as [[checkpoint]] tables with a path each")
    shared = _options({k: v for k, v in grid.items() if k != "checkpoint"}, str(path))
    runs, seen = [], set()
    for number, table in enumerate(checkpoints, 1):
        ckpt = table.get("path")
        if not isinstance(ckpt, str) or not ckpt:
            raise InputError(f"{path}: checkpoint {number} has no path")
        resolved = str((path.parent / ckpt).resolve()) if not Path(ckpt).is_absolute() else ckpt
        name = table.get("name") or Path(ckpt).name
        stem = re.sub(r"[^A-Za-z0-9._=+-]", "_", f"{path.stem}-{name}")[:120]
        if stem in seen:
            raise InputError(f"{path}: two checkpoints would share the run name {stem!r}; give one a name = ...")
        seen.add(stem)
        runs.append((stem, resolved, _options({k: v for k, v in table.items() if k != "name"}, f"{path}: {ckpt}")))
    return shared, runs


def run_grid(
    path: Path,
    extra: Sequence[str],
    prepare: Callable[[str, list[str], list[str]], list[str]],
    main: Callable[[Sequence[str]], int],
) -> int:
    """Every checkpoint of the sweep file through ``main`` (``python -m bench``'s); the worst exit code wins.

    ``prepare(run name, arguments of a new run, arguments of a resumed one)`` checks a checkpoint's options and
    returns the arguments to run it with; it is called for every checkpoint before any is measured.
    """
    from bench.run.run_dir import run_dir

    shared, runs = read_grid(path)
    plans: list[list[str]] = []
    for stem, ckpt, own in runs:
        new = [ckpt, *shared, *own, *extra, "--run-id", stem]
        resumed = ["--resume", stem, *_free(extra)]
        try:
            plans.append(
                prepare(stem, new, resumed)
                if not (run_dir(stem) / "run_config.json").is_file()
                else prepare(stem, [], [*resumed, *_model_option([*shared, *own])])
            )
        except InputError as exc:
            raise InputError(f"sweep file {path}, checkpoint {ckpt}: {exc}") from None
    worst = 0
    for (stem, ckpt, _), argv in zip(runs, plans, strict=True):
        print(f"\n===== {stem}: {ckpt} =====", file=sys.stderr)
        worst = max(worst, main(argv) or 0)
    return worst


def _model_option(options: list[str]) -> list[str]:
    """``--model X`` from a checkpoint's options: a resumed run with a factory asks for it again."""
    for i, item in enumerate(options[:-1]):
        if item == "--model":
            return ["--model", options[i + 1]]
    return []


def _free(extra: Sequence[str]) -> list[str]:
    """The options given beside --sweep-file that a resumed run accepts (how it is watched, not what it measures)."""
    keep = ("--executor", "--ray-address", "--ray-target", "--timeout")
    out, i = [], 0
    while i < len(extra):
        if extra[i] in keep and i + 1 < len(extra):
            out += [extra[i], extra[i + 1]]
            i += 2
            continue
        if extra[i] in ("--no-progress", "--wandb", "--no-retry-failed"):
            out.append(extra[i])
        i += 1
    return out
