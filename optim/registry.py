"""One registry for every recipe step (as timm registers models): producers add themselves with a decorator.

A step takes the previous step's :class:`~optim.artifact.Artifact` (an ``nn.Module``, an ONNX file, ...)
and returns a new one. Each step declares which artifact kinds it accepts and produces, so an
impossible chain fails when the recipe is parsed, before anything is built.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from data.errors import InputError

# Modules that register steps when imported. Importing is cheap: heavy libraries load inside the builders.
PRODUCER_MODULES = (
    "optim.eager",
    "optim.onnx",
    "optim.ptq",
    "optim.openvino",
    "optim.qat",
    "optim.dynamic",
    "optim.prune",
    "optim.compile",
    "optim.tensorrt",
    "optim.torchao_step",
)

# Artifact kinds passed between steps.
MODULE = "module"  # an eager nn.Module (FP32 weights, possibly pruned)
GRAPH = "graph"  # a torch.export / PT2E graph module (e.g. quantized), runnable and compilable
ONNX = "onnx"  # an ONNX file on disk
RUNTIME = "runtime"  # something only runnable: a compiled module, an ORT session, a TensorRT engine


@dataclass(frozen=True)
class StepSpec:
    """What a recipe step is: its name, arguments, what it accepts and produces, where it runs."""

    name: str
    build: Callable[..., Any]
    accepts: frozenset[str]
    produces: str
    parse_args: Callable[[Sequence[str]], dict[str, Any]]
    devices: frozenset[str] = frozenset({"cpu", "cuda"})
    description: str = ""
    usage: str = ""
    default_recipes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # device -> recipes in the default sweep
    available: Callable[[str], str | None] | None = None  # device -> reason it cannot run here, or None
    # Whether loading a saved variant this step made compiles again ((args, device) -> bool, or a constant):
    # a sweep does not start a second measurement process for those, it would pay the compile twice.
    reload_compiles: Callable[[dict[str, Any], str], bool] | bool = False
    # Recipes to try, in order, when a recipe ending in this step misses the accuracy budget:
    # (parsed recipe) -> [(recipe text, why)]. The producer commands and the search use them.
    fallbacks: Callable[[Any], list[tuple[str, str]]] | None = None
    # Why this step may be slower than FP32 on some hardware: (args, device, cpu flags) -> sentences,
    # for the explanations of a leaderboard.
    slow_hints: Callable[[dict[str, Any], str, set[str]], list[str]] | None = None
    # Hardware this step needs to be worth measuring by default: (args, device) -> capability names
    # (bench.run.recipes_for_machine says which machine has which). --recipes runs a step anyway.
    needs: Callable[[dict[str, Any], str], tuple[str, ...]] | None = None
    # When the kind made depends on the arguments (qat(ort) writes an ONNX file another step can take, qat(x86) a
    # compiled graph): (args) -> kind. ``produces`` stays the kind listed by ``python -m optim list``.
    produces_for: Callable[[dict[str, Any]], str] | None = None

    def output_kind(self, args: dict[str, Any]) -> str:
        """The artifact kind this step makes with ``args``: what the next step of a chain must accept."""
        return self.produces_for(args) if self.produces_for is not None else self.produces


STEPS: dict[str, StepSpec] = {}
_loaded = False


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def no_args(step: str) -> Callable[[Sequence[str]], dict[str, Any]]:
    def parse(args: Sequence[str]) -> dict[str, Any]:
        if args:
            raise InputError(f"recipe step {step!r} takes no arguments, got ({', '.join(args)})")
        return {}

    return parse


def register_step(
    name: str,
    *,
    accepts: Sequence[str],
    produces: str,
    parse_args: Callable[[Sequence[str]], dict[str, Any]] | None = None,
    devices: Sequence[str] = ("cpu", "cuda"),
    description: str = "",
    usage: str = "",
    default_recipes: dict[str, Sequence[str]] | None = None,
    available: Callable[[str], str | None] | None = None,
    reload_compiles: Callable[[dict[str, Any], str], bool] | bool = False,
    fallbacks: Callable[[Any], list[tuple[str, str]]] | None = None,
    slow_hints: Callable[[dict[str, Any], str, set[str]], list[str]] | None = None,
    needs: Callable[[dict[str, Any], str], tuple[str, ...]] | None = None,
    produces_for: Callable[[dict[str, Any]], str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``fn(artifact, ctx, **args) -> Artifact`` as recipe step ``name``."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        existing = STEPS.get(name)
        if existing is not None and existing.build is not fn:
            # `python -m optim.prune` runs the module as __main__ and load_producers() imports it again:
            # the same function registered from both names is one step, not a clash.
            same = existing.build.__qualname__ == fn.__qualname__ and "__main__" in (
                existing.build.__module__,
                fn.__module__,
            )
            if not same:
                raise RuntimeError(
                    f"recipe step {name!r} registered twice ({existing.build.__module__}, {fn.__module__})"
                )
            if fn.__module__ == "__main__":
                return fn
        STEPS[name] = StepSpec(
            name=name,
            build=fn,
            accepts=frozenset(accepts),
            produces=produces,
            parse_args=parse_args or no_args(name),
            devices=frozenset(devices),
            description=description or _first_line(fn.__doc__),
            usage=usage or name,
            default_recipes={k: tuple(v) for k, v in (default_recipes or {}).items()},
            available=available,
            reload_compiles=reload_compiles,
            fallbacks=fallbacks,
            slow_hints=slow_hints,
            needs=needs,
            produces_for=produces_for,
        )
        return fn

    return decorator


def load_producers() -> dict[str, StepSpec]:
    """Import every producer module so its steps register; a module not written yet is simply absent.

    ``OPTBENCH_PLUGINS=my_pkg.steps,other`` imports the user's own producer modules too (they call
    :func:`register_step`); spawned measurement processes inherit the variable, so plug-ins work in sweeps.
    """
    global _loaded
    if not _loaded:
        plugins = [m.strip() for m in os.environ.get("OPTBENCH_PLUGINS", "").split(",") if m.strip()]
        for module in (*PRODUCER_MODULES, *plugins):
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:  # a producer's own import failed: that is a bug, not an absent producer
                    raise
        _loaded = True
    return STEPS


def get_step(name: str) -> StepSpec:
    steps = load_producers()
    if name not in steps:
        raise InputError(f"unknown recipe step {name!r}; known steps: {', '.join(sorted(steps))}")
    return steps[name]


def list_steps(pattern: str = "*") -> list[StepSpec]:
    return [spec for name, spec in sorted(load_producers().items()) if fnmatch.fnmatch(name, pattern)]


def default_recipes(device: str) -> list[str]:
    """Recipes a plain ``python -m bench`` runs on ``device``, in registration order, without duplicates."""
    out: list[str] = []
    for spec in load_producers().values():
        for recipe in spec.default_recipes.get(device, ()):
            if recipe not in out:
                out.append(recipe)
    return out
