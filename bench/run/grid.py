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

Relative paths in the file (``path``, ``data``, ``data-dir``) are read from the file's own folder, wherever the
command runs. Every checkpoint's options are checked before anything is measured: a bad one stops the grid with
one line that names it. A checkpoint whose run exists already continues it as ``--resume`` would, with the file's
options compared with the stored ones: an edit that changes what was measured (another ``data``, other recipes) is
refused with the option named, never measured with the old value.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tomllib

from data.errors import InputError

# Options a sweep file cannot set: it names its runs itself, and an export takes one run (bench.export does each).
RESERVED = {"sweep_file", "run_id", "resume", "list", "export"}


PATH_OPTIONS = ("data", "data-dir")  # besides ``path``: read relative to the sweep file's folder


def _aliases() -> dict[str, str]:
    """Grid keys that executors define for their options (``targets`` -> ``--ray-target``)."""
    from bench.run.executors import executors

    return {key: option for spec in executors().values() for key, option in spec.grid_keys.items()}


def _relative_to(folder: Path, name: str, value: Any) -> Any:
    """A path-valued option of the file, absolute; ``data = "digits"`` and timm names stay as they are."""
    if name not in PATH_OPTIONS or not isinstance(value, str) or Path(value).is_absolute():
        return value
    candidate = (folder / value).expanduser()
    return str(candidate.resolve()) if name == "data-dir" or candidate.exists() else value


def _options(table: dict[str, Any], where: str, folder: Path) -> list[str]:
    """A TOML table of options as command-line arguments (``img-size = 32`` -> ``--img-size 32``)."""
    out: list[str] = []
    for key, value in table.items():
        name = key.replace("_", "-")
        if name == "path" or (name == "checkpoint" and isinstance(value, list)):
            continue
        if name.replace("-", "_") in RESERVED:
            raise InputError(
                f"{where}: {key!r} cannot be set in a sweep file (it names its runs, resumes each one itself, and an "
                "export takes one run: python -m bench.export RUN_ID)"
            )
        value = _relative_to(folder, name, value)
        if name in _aliases():
            value = ",".join(value) if isinstance(value, list) else value
            name = _aliases()[name].removeprefix("--")
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            raise InputError(f"{where}: {key} = {value!r}: write a switch as a TOML boolean ({key} = true)")
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
    except IsADirectoryError:
        raise InputError(f"sweep file {path} is a folder; name the .toml file") from None
    except OSError as exc:
        raise InputError(f"cannot read sweep file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid TOML ({exc})") from None
    checkpoints = grid.get("checkpoint")
    if not isinstance(checkpoints, list) or not checkpoints or not all(isinstance(c, dict) for c in checkpoints):
        raise InputError(f"{path}: list the checkpoints as [[checkpoint]] tables with a path each")
    folder = path.resolve().parent
    shared = _options({k: v for k, v in grid.items() if k != "checkpoint"}, str(path), folder)
    runs, seen = [], set()
    for number, table in enumerate(checkpoints, 1):
        ckpt = table.get("path")
        if not isinstance(ckpt, str) or not ckpt:
            raise InputError(f"{path}: checkpoint {number} has no path")
        resolved = str((folder / ckpt).resolve()) if not Path(ckpt).is_absolute() else ckpt
        name = table.get("name") or Path(ckpt).name
        stem = re.sub(r"[^A-Za-z0-9._=+-]", "_", f"{path.stem}-{name}")[:120]
        if stem in seen:
            raise InputError(f"{path}: two checkpoints would share the run name {stem!r}; give one a name = ...")
        seen.add(stem)
        own = _options({k: v for k, v in table.items() if k != "name"}, f"{path}: {ckpt}", folder)
        runs.append((stem, resolved, own))
    return shared, runs


def run_grid(
    path: Path,
    extra: Sequence[str],
    prepare: Callable[[str, list[str]], list[str]],
    main: Callable[[Sequence[str]], int],
) -> int:
    """Every checkpoint of the sweep file through ``main`` (``python -m bench``'s); the worst exit code wins.

    ``prepare(run name, the checkpoint's options)`` checks them and returns the arguments to run it with (a new run,
    or its run continued); it is called for every checkpoint before any is measured.
    """
    shared, runs = read_grid(path)
    plans: list[list[str]] = []
    for stem, ckpt, own in runs:
        try:
            plans.append(prepare(stem, [ckpt, *shared, *own, *extra]))
        except InputError as exc:
            raise InputError(f"sweep file {path}, checkpoint {ckpt}: {exc}") from None
    worst = 0
    for (stem, ckpt, _), argv in zip(runs, plans, strict=True):
        for stream in (sys.stdout, sys.stderr):  # leaderboards go to stdout, progress to stderr: both say whose
            print(f"\n===== {stem}: {ckpt} =====", file=stream, flush=True)
        worst = max(worst, main(argv) or 0)
    return worst
