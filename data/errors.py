"""User-facing errors and the CLI wrapper that turns them into one line and exit code 2.

Every package raises :class:`InputError` (or a subclass) for bad input, so each ``main()`` can promise
"one line on stderr, exit code 2, no traceback" without catching unrelated bugs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """Bad input from the user: a path, a spec, a value. The message names the value and the fix."""


class CheckpointError(InputError):
    """A checkpoint that cannot be loaded safely or does not fit the requested model."""


class DataSpecError(InputError):
    """A data spec that does not name a loadable dataset."""


class MissingDependencyError(InputError):
    """An optional backend is not installed (or the hardware it needs is absent)."""


def require(module: str, install: str):
    """Import an optional package, or raise :class:`MissingDependencyError` naming it and how to ``install`` it.

    Only the package itself being absent is turned into that one line; a package that is there but fails inside
    its own imports is a real error and keeps its traceback."""
    package = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if (exc.name or package).partition(".")[0] != package:
            raise
        raise MissingDependencyError(f"{package} is not installed ({install})") from None


def missing(module: str, install: str) -> str | None:
    """Why an optional package cannot be used (as :func:`require` words it), or None when it imports."""
    try:
        require(module, install)
    except MissingDependencyError as exc:
        return str(exc)
    return None


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run ``main`` and exit; an :class:`InputError` becomes one line on stderr and exit code 2."""
    try:
        code = main(argv)
    except InputError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or EXIT_OK)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse's own prints the usage block first), and the ``--results`` option
    every command takes: parsing fixes the results folder, absolute, for the command and every process it starts
    (:mod:`data.paths`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--results",
            metavar="DIR",
            help="folder for run outputs (default: $OPTBENCH_RESULTS, else ./results)",
        )

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        from data.paths import absolute, use_results_dir

        parsed, rest = super().parse_known_args(args, namespace)
        for action in self._actions:  # an empty "$CKPT" or --out '' in a script is a mistake, never a choice
            value = getattr(parsed, action.dest, None)
            if isinstance(value, str) and not value.strip() and value != action.default:
                named = action.option_strings[-1] if action.option_strings else (action.metavar or action.dest.upper())
                advice = "give it a value or leave it out" if action.option_strings else "name a file or folder"
                raise InputError(f"{named} is empty; {advice}")
        option = getattr(parsed, "results", None)
        if option and absolute(option).exists() and not absolute(option).is_dir():
            raise InputError(f"--results {absolute(option)} exists and is not a folder")
        use_results_dir(option)
        return parsed, rest

    def error(self, message: str) -> None:  # type: ignore[override]
        """One line through :func:`run_cli` (exit 2); a caller that checks many argument lists (a sweep file's
        checkpoints) can say which one it was."""
        raise InputError(f"{self.prog}: {message} (see --help)")
