"""Producers of deployment variants and the recipes that chain them; ``python -m optim list`` shows them."""

from optim.artifact import Artifact, BuildContext
from optim.recipe import Recipe, parse
from optim.registry import register_step
from optim.variant import Variant, build

__all__ = ["Artifact", "BuildContext", "Recipe", "Variant", "build", "parse", "register_step"]
