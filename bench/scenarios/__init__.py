"""Scenarios: what a measurement process times and how, each in a module of its own.

A scenario owns its timed loop, its summary statistics, its command-line options and the leaderboard columns it
adds; the server, the leaderboard, the answer, the plots, the gate and ``pytest bench`` take whatever scenarios the
run has. ``latency`` (batch 1, back to back) and ``throughput`` (batch N) are measured by default and interleaved
with the fp32 reference; a new scenario is one module that calls :func:`register` (and one line in ``MODULES``).
"""

from __future__ import annotations

import importlib

from bench.scenarios.base import Scenario
from bench.scenarios.config import Column, ScenarioConfig
from data.errors import InputError

MODULES = ("bench.scenarios.latency", "bench.scenarios.throughput", "bench.scenarios.serve")
_REGISTRY: dict[str, Scenario] = {}
_loaded = False


def register(scenario: Scenario) -> Scenario:
    _REGISTRY[scenario.name] = scenario
    return scenario


def all_scenarios() -> list[Scenario]:
    """Every registered scenario, in registration order."""
    global _loaded
    if not _loaded:
        for module in MODULES:
            importlib.import_module(module)
        _loaded = True
    return list(_REGISTRY.values())


def ranking() -> Scenario:
    """The scenario the answer ranks variants by."""
    return next(s for s in all_scenarios() if s.ranks)


def in_rows(rows: list[dict]) -> list[Scenario]:
    """The default scenarios and any other one ``rows`` hold, in registration order: what a report shows."""
    seen = {str(r.get("scenario")) for r in rows}
    return [s for s in all_scenarios() if s.default or s.name in seen]


def get(name: str) -> Scenario:
    known = {s.name: s for s in all_scenarios()}
    if name not in known:
        raise InputError(f"unknown scenario {name!r}; choose one of: {', '.join(known)}")
    return known[name]


def configs_for(options: object, device: str) -> tuple[ScenarioConfig, ...]:
    """The scenarios a run with these parsed options measures (each scenario decides from its own options)."""
    out = []
    for scenario in all_scenarios():
        cfg = scenario.config(options, device)
        if cfg is not None:
            out.append(cfg)
    return tuple(out)


def add_arguments(parser: object) -> None:
    """Every scenario's own command-line options."""
    for scenario in all_scenarios():
        scenario.add_arguments(parser)


__all__ = [
    "Column",
    "Scenario",
    "ScenarioConfig",
    "add_arguments",
    "all_scenarios",
    "configs_for",
    "get",
    "in_rows",
    "ranking",
    "register",
]
