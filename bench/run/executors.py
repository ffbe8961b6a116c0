"""Where a sweep's jobs are measured: executors register themselves here, each with its own options.

``local`` measures on this machine, one job at a time; ``ray`` on a Ray cluster, one job per node. An executor
module calls :func:`register` with an :class:`ExecutorSpec`: its name, how to make it from a run configuration, and
its own command-line options (the Ray address and target belong to the Ray executor, and travel in the run
configuration's ``executor_options``). A new executor is one module and one line in ``MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from data.errors import InputError

MODULES = ("bench.run.local", "bench.run.ray_executor")


@dataclass(frozen=True)
class ExecutorSpec:
    name: str
    description: str
    make: Callable[[Any], Any]  # RunConfig -> an Executor (bench.run.sweep)
    add_arguments: Callable[[Any], None] | None = None  # its own options on the parser
    from_args: Callable[[Any], dict[str, Any]] | None = None  # parsed options -> RunConfig.executor_options
    options: Mapping[str, str] = field(default_factory=dict)  # its option (``--ray-address``) -> key in options
    grid_keys: Mapping[str, str] = field(default_factory=dict)  # sweep-file keys for its options (``targets``)

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(self.options)

    def to_cli(self, options: Mapping[str, Any]) -> list[str]:
        """The options that give ``options`` again (``--resume`` compares runs through them)."""
        out: list[str] = []
        for name, key in self.options.items():
            if options.get(key) is not None:
                out += [name, str(options[key])]
        return out


_REGISTRY: dict[str, ExecutorSpec] = {}
_loaded = False


def register(spec: ExecutorSpec) -> ExecutorSpec:
    _REGISTRY[spec.name] = spec
    return spec


def executors() -> dict[str, ExecutorSpec]:
    global _loaded
    if not _loaded:
        for module in MODULES:
            importlib.import_module(module)
        _loaded = True
    return dict(_REGISTRY)


def executor_spec(name: str) -> ExecutorSpec:
    known = executors()
    if name not in known:
        raise InputError(f"unknown executor {name!r}; choose one of: {', '.join(known)}")
    return known[name]


def add_arguments(parser: Any) -> None:
    """``--executor`` and every executor's own options."""
    known = executors()
    parser.add_argument(
        "--executor",
        default="local",
        help="; ".join(f"{name}: {spec.description}" for name, spec in known.items()) + " (default local)",
    )
    for spec in known.values():
        if spec.add_arguments is not None:
            spec.add_arguments(parser)


def options_from_args(args: Any) -> tuple[str, dict[str, Any]]:
    """(executor name, its options) from parsed options; options of another executor are refused."""
    spec = executor_spec(args.executor)
    for other in executors().values():
        if other is spec:
            continue
        given = [n for n in other.option_names if getattr(args, n.removeprefix("--").replace("-", "_"), None)]
        if given:
            raise InputError(f"{', '.join(given)} belong(s) to --executor {other.name}, not {spec.name}")
    return spec.name, (spec.from_args(args) if spec.from_args else {})


def make_executor(cfg: Any) -> Any:
    return executor_spec(cfg.executor).make(cfg)
