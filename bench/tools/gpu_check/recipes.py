"""Which recipes the sweep runs: the plan's (or ``--recipes``), what the machine's packages add, what it knows.

The names are checked against ``python -m optim list`` as the steps' interpreter prints it, so a step renamed
since the check was written is left out with a note instead of failing the whole sweep on a lent machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from bench.tools.gpu_check.plan import WHEN_INSTALLED, Plan
from optim.recipe import split_top_level


def recipe_steps(listing: str) -> set[str]:
    """Step names from ``python -m optim list`` (``compile[(...)]`` -> ``compile``)."""
    names = set()
    for line in listing.splitlines():
        found = re.match(r"^([A-Za-z][\w.-]*)", line)
        if found and not line.startswith(("default recipes", "chain steps")):
            names.add(found[1])
    return names


def unknown_recipes(recipes: Sequence[str], steps: set[str]) -> list[str]:
    """Recipes naming a step the listing lacks (a renamed step would otherwise fail the whole sweep)."""
    if not steps:
        return []
    bad = []
    for recipe in recipes:
        for part in split_top_level(recipe, "+"):
            name = re.match(r"^[\w.-]*", part)[0]
            if name not in steps:
                bad.append(recipe)
                break
    return bad


def choose_recipes(
    plan: Plan, asked: Sequence[str], packages: Mapping[str, str | None], steps: set[str]
) -> tuple[tuple[str, ...], list[str]]:
    """The sweep's recipes, fp32 first, and the notes that say what was added or left out.

    ``asked`` is ``--recipes`` (empty: the plan's); on a GPU without ``--recipes`` the recipes of
    :data:`~bench.tools.gpu_check.plan.WHEN_INSTALLED` are added where their package is installed.
    """
    notes = []
    recipes = tuple(asked) or plan.recipes
    if not asked and not plan.dry:
        for package, more in WHEN_INSTALLED:
            if packages.get(package):
                recipes += more
                notes.append(f"{package} is installed: {', '.join(more)} added at the end of the sweep")
    if "fp32" not in recipes:
        recipes = ("fp32", *recipes)
    bad = unknown_recipes(recipes, steps)
    if bad:
        notes.append(f"left out, not a recipe step of python -m optim list here: {', '.join(bad)}")
    return tuple(r for r in recipes if r not in bad), notes


def serve_option(help_text: str) -> tuple[bool, str]:
    """Whether ``python -m bench --help`` offers ``--serve`` as a plain flag (the serve scenario being added)."""
    found = re.search(r"--serve(?![\w-])( [A-Z_]+)?", help_text)
    if not found:
        return False, "python -m bench has no --serve option here"
    if found[1]:
        return False, f"--serve takes a value ({found[1].strip()}): pass it with --sweep-args"
    return True, "--serve listed by python -m bench --help: the serve scenario is measured"
