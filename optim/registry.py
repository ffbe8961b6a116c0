"""One registry for every recipe step (as timm registers models): producers add themselves with a decorator.

A step takes the previous step's :class:`~optim.artifact.Artifact` (an ``nn.Module``, an ONNX file, ...)
and returns a new one. Each step declares, in its own module, everything the rest of the code asks about it: which
artifact kinds it accepts and produces (so an impossible chain fails when the recipe is parsed), its typed arguments
(:class:`Arg`: parsing, usage and ``python -m optim list`` come from them), its default recipes, the hardware it
needs, whether it calibrates, whether ``--search`` builds chains on it and why it may be slow. Nothing outside a
step's module names the step: callers ask the parsed recipe (:mod:`optim.recipe`).
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from data.errors import InputError
from optim.args import Arg, parse_values, usage_of

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
REFERENCE = "fp32"  # the recipe every speedup, top-1 drop and agreement is measured against (optim.eager builds it)

# Artifact kinds passed between steps.
MODULE = "module"  # an eager nn.Module (FP32 weights, possibly pruned)
GRAPH = "graph"  # a torch.export / PT2E graph module (e.g. quantized), runnable and compilable
ONNX = "onnx"  # an ONNX file on disk
RUNTIME = "runtime"  # something only runnable: a compiled module, an ORT session, a TensorRT engine

Args = tuple[Arg, ...] | Callable[[], tuple[Arg, ...]]


def resolve(value: Any, *args: Any) -> Any:
    """A declaration that is either a constant or a function of its arguments, evaluated."""
    return value(*args) if callable(value) else value


@dataclass(frozen=True)
class StepSpec:
    """What a recipe step is. Fields that may depend on the step's parsed arguments take a constant or a function
    of ``(args, device)`` (``slow_hints``: ``(args, device, cpu flags)``)."""

    name: str
    build: Callable[..., Any]
    accepts: frozenset[str]
    produces: str
    parse_args: Callable[[Sequence[str]], dict[str, Any]]
    args: Args = ()
    devices: frozenset[str] = frozenset({"cpu", "cuda"})
    description: str = ""
    default_recipes: dict[str, tuple[str, ...]] | Callable[[], dict[str, Sequence[str]]] = ()  # device -> recipes
    available: Callable[[dict[str, Any], str], str | None] | None = None  # why it cannot run here, or None
    # Whether loading a saved variant this step made compiles again: a sweep does not start a second measurement
    # process for those, it would pay the compile twice.
    reload_compiles: Callable[[dict[str, Any], str], bool] | bool = False
    # Recipes to try, in order, when a recipe ending in this step misses the accuracy budget:
    # (parsed recipe) -> [(recipe text, why)]. The producer commands and the search use them.
    fallbacks: Callable[[Any], list[tuple[str, str]]] | None = None
    slow_hints: Callable[[dict[str, Any], str, set[str]], list[str]] | Sequence[str] = ()  # for the leaderboard
    # Capabilities of the machine the step needs to be worth measuring by default (bench.run.recipes_for_machine
    # says which machine has which); --recipes runs a step anyway.
    needs: Callable[[dict[str, Any], str], Sequence[str]] | Sequence[str] = ()
    # When the kind made depends on the arguments (qat(ort) writes an ONNX file another step can take, qat(x86) a
    # compiled graph): (args) -> kind. ``produces`` stays the kind listed by ``python -m optim list``.
    produces_for: Callable[[dict[str, Any]], str] | None = None
    # True: calibrated on the train split's calibration subset; a sentence: learns its ranges on the train split
    # otherwise (the manifest of a budgeted build says which).
    calibrates: bool | str = False
    # A fast backend ``--search`` builds chains on (pruning in front of it): constant or (args) -> bool.
    search_candidate: Callable[[dict[str, Any]], bool] | bool = False
    quantize_method: bool = False  # offered as ``python -m optim.quantize --method NAME``
    # The step narrows the arithmetic (INT8; FP16/BF16 on CUDA) or removes channels: constant or (args, device) ->
    # bool. A sweep
    # measures recipes with more such steps first (bench.run.sweep), because a variant can only stop early against
    # one measured before it; the order changes how long a sweep takes, never what it reports.
    compresses: Callable[[dict[str, Any], str], bool] | bool = False
    details: Callable[[], list[str]] | None = None  # more lines for ``python -m optim list NAME``

    def output_kind(self, args: dict[str, Any]) -> str:
        """The artifact kind this step makes with ``args``: what the next step of a chain must accept."""
        return self.produces_for(args) if self.produces_for is not None else self.produces

    def arg_list(self) -> tuple[Arg, ...]:
        return tuple(resolve(self.args))

    def defaults(self, device: str) -> tuple[str, ...]:
        return tuple(dict(resolve(self.default_recipes) or {}).get(device, ()))

    @property
    def usage(self) -> str:
        return usage_of(self.name, self.arg_list())


STEPS: dict[str, StepSpec] = {}
_loaded = False


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _declared_parser(name: str, args: Args, check: Callable[[dict[str, Any]], Any] | None):
    def parse(raw: Sequence[str]) -> dict[str, Any]:
        values = parse_values(name, raw, resolve(args))
        if check is not None:
            check(values)
        return values

    return parse


def register_step(
    name: str,
    *,
    accepts: Sequence[str],
    produces: str,
    args: Args = (),
    check: Callable[[dict[str, Any]], Any] | None = None,
    parse_args: Callable[[Sequence[str]], dict[str, Any]] | None = None,
    devices: Sequence[str] = ("cpu", "cuda"),
    default_recipes: dict[str, Sequence[str]] | Callable[[], dict[str, Sequence[str]]] | None = None,
    **declared: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``fn(artifact, ctx, **args) -> Artifact`` as recipe step ``name``.

    ``args`` declares the step's arguments (parsed into ``args`` for ``fn``), ``check`` validates them together;
    ``parse_args`` replaces the declared parser where the arguments depend on each other (``ptq``'s backend). The
    other keywords are :class:`StepSpec` fields."""

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
        recipes = default_recipes or {}
        STEPS[name] = StepSpec(
            name=name,
            build=fn,
            accepts=frozenset(accepts),
            produces=produces,
            parse_args=parse_args or _declared_parser(name, args, check),
            args=args,
            devices=frozenset(devices),
            description=declared.pop("description", "") or _first_line(fn.__doc__),
            default_recipes=recipes if callable(recipes) else {k: tuple(v) for k, v in recipes.items()},
            **declared,
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
        for recipe in spec.defaults(device):
            if recipe not in out:
                out.append(recipe)
    return out
