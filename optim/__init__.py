"""Producers of deployment variants and the recipes that chain them; ``python -m optim list`` shows them."""

# ruff: noqa: E402 - the import path is set before the package imports anything
import sys as _sys
from pathlib import Path as _Path

# optbench's own models/ and data/ come before a user's packages of the same names in the folder they run in.
_ROOT = str(_Path(__file__).resolve().parent.parent)
if _sys.path[:1] != [_ROOT]:
    _sys.path.insert(0, _ROOT)

from optim.artifact import Artifact, BuildContext
from optim.recipe import Recipe, parse
from optim.registry import register_step
from optim.variant import Variant, build

__all__ = ["Artifact", "BuildContext", "Recipe", "Variant", "build", "parse", "register_step"]
