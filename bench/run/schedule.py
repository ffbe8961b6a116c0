"""Interleaved measurement: several sides, each warm in its own process(es), timed in alternating slices.

A machine's speed drifts, within seconds and from one process to the next, faster and further than the
differences we want to see. Timing variants in turn for a few seconds each therefore compares machine moods.
Here every side stays loaded in its own process (:mod:`bench.run.server`) and the coordinator asks each for a
short slice in turn, round after round, rotating who goes first; paired slices see the same mood and their ratio
is what :mod:`bench.measure.paired_stats` summarizes. The ratio stays put where the absolute times do not
(docs/measurement.md).

A side answers a slice only once its thread pools have stopped spin-waiting (:mod:`bench.measure.quiesce`), so
the other side starts on idle CPUs; the coordinator adds a short pause.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.measure.sequential import TIME_LIMIT
from bench.run.client import MeasurementServer, ServerError
from bench.run.stopping import RoundStopper
from bench.scenarios import ScenarioConfig


@dataclass(frozen=True)
class PairingPlan:
    """How many rounds, and how long each slice is: the scenario's timing budget spread over the rounds."""

    rounds: int = 20
    gap_s: float = 0.05
    min_rounds: int = 5
    # None: each slice takes its share of the scenario's call count too (the gate's samples for its U test).
    # 1: a slice is its time share, and a call longer than that is a slice of one call.
    calls_per_slice: int | None = None
    # Cap on the seconds each side may spend per scenario, below the scenario's own max_seconds (None: no cap).
    side_seconds: float | None = None

    def slice_budget(self, scenario: ScenarioConfig) -> tuple[float, int]:
        """(seconds, calls) per slice: together the rounds give what one uninterrupted run would."""
        calls = self.calls_per_slice or math.ceil(scenario.min_iters / self.rounds)
        return scenario.min_seconds / self.rounds, max(1, calls)

    def seconds_per_side(self, scenario: ScenarioConfig) -> float:
        """How long a side may be timed in ``scenario`` before the rounds stop (after ``min_rounds``)."""
        return min(scenario.max_seconds, self.side_seconds or scenario.max_seconds)


class Side:
    """Several processes of one variant measured as one side: each round times one of them.

    Why: a process is one draw. Processes of the same model settle a few percent apart for as long as they
    live, and that offset, not the round-to-round noise, is much of what moves a variant's paired speedup
    from one sweep to the next (docs/measurement.md). Spreading a side's rounds over K processes
    averages K such offsets at the price of starting K - 1 more processes; the timing budget is unchanged.

    ``report``: when the timed processes all loaded the variant another process built (:mod:`bench.run.sides`),
    the builder's fields (build time, first call, accuracy), which stand for the side in its rows.
    ``top1``: known before timing where the reference measured it first or such a builder reported it.
    """

    def __init__(self, name: str, servers: Sequence[MeasurementServer], report: dict[str, Any] | None = None) -> None:
        if not servers:
            raise ValueError("a side needs at least one process")
        self.name = name
        self.servers = list(servers)
        self.report = report
        self.dropped: dict[int, str] = {}  # process index -> why it was dropped (never 0: the first is the side)
        self.picked: dict[str, list[int]] = {}  # scenario -> which process took each round of the last interleave
        self.history: dict[str, list[tuple[int, list[float]]]] = {}  # scenario -> every (process, slice), in order
        self.positions: dict[str, list[int]] = {}  # scenario -> where in each round its slice came (0: first)
        self.top1: float | None = None  # when measured before timing (the reference; a builder that is not timed)
        self.failure: ServerError | None = None  # why its first process failed, where that left the others going

    @property
    def first(self) -> MeasurementServer:
        """The side's first timed process: its failure is the side's (see :meth:`take_slice`)."""
        return self.servers[0]

    def alive(self) -> bool:
        return self.first.proc.poll() is None

    def take_slice(self, pick: int, scenario: ScenarioConfig, seconds: float, calls: int) -> tuple[int, list[float]]:
        """One slice from process ``pick``, or from the next live one if it was dropped.

        A second process that fails is dropped with the reason and the slice is taken from another: the
        first process failing is the side failing, and raises.
        """
        while True:
            if pick in self.dropped:
                live = [i for i in range(len(self.servers)) if i not in self.dropped]
                pick = next((i for i in live if i > pick), live[0])
            try:
                samples = self.servers[pick].slice(scenario, seconds, calls)
            except ServerError as exc:
                if pick == 0:
                    raise
                self.dropped[pick] = str(exc)
                self.servers[pick].close()
                continue
            self.history.setdefault(scenario.name, []).append((pick, samples))
            return pick, samples

    def drop(self, index: int, why: str) -> None:
        self.dropped[index] = why
        self.servers[index].close()

    def notes(self) -> list[str]:
        """One line per process dropped on the way (its slices until then are kept)."""
        names = {i: self.servers[i].name for i in self.dropped}
        return [f"{names[i]} dropped ({why}); its slices until then are kept" for i, why in self.dropped.items()]

    def close(self) -> None:
        for server in self.servers:
            server.close()


def _as_side(server: MeasurementServer | Side) -> Side:
    return server if isinstance(server, Side) else Side(server.name, [server])


def first_side(round_index: int, sides: int) -> int:
    """The side that takes the first slice of round ``round_index`` when two sides alternate (AB, BA, ...)."""
    return round_index % sides


def round_order(round_index: int, sides: int, reference: int | None = None) -> list[int]:
    """Who goes when in round ``round_index``.

    Without a ``reference``, a rotation that moves by one each round (AB, BA, ... for two sides). With one (the
    fp32 side that several variants share), it goes in the middle and the others on both sides of it, the order
    reversed every other round and rotated every second: every variant then runs right before or right after the
    reference, in each order equally often ([A, fp32, B], [B, fp32, A], ...). A plain rotation of [fp32, A, B]
    would put a variant a whole slice away from fp32 in a third of the rounds and after it in two of three.
    """
    if reference is None or sides <= 2:
        k = first_side(round_index, max(sides, 1))
        return [*range(k, sides), *range(k)]
    others = [i for i in range(sides) if i != reference]
    k = (round_index // 2) % len(others)
    others = others[k:] + others[:k]
    half = len(others) // 2
    order = [*others[:half], reference, *others[half:]]
    return order[::-1] if round_index % 2 else order


def interleave(
    servers: Sequence[MeasurementServer | Side],
    scenarios: Sequence[ScenarioConfig],
    plan: PairingPlan,
    stoppers: Mapping[str, RoundStopper] | None = None,
    reference: int | None = None,
) -> dict[str, dict[str, list[list[float]]]]:
    """Alternate slices of every side, scenario by scenario; returns ``{side: {scenario: [slice samples]}}``.

    The order changes each round (:func:`round_order`; ``reference``: the index of the side the others are paired
    with, which then runs in the middle) so no side always runs right after the pause. A side with several processes
    (:class:`Side`) gives each round to one of them, the choice changing per block of ``len(sides)`` rounds and
    nested across sides, so every order occurs with every choice and every combination of processes meets equally
    often. ``picked`` records which process took each round, ``positions`` where in the round its slice came.

    ``stoppers``: per side name, the rule that may end that side's rounds at a look (:mod:`bench.run.stopping`);
    a side that stops leaves the rotation, and a scenario ends once every side with a stopper has left it. Sides
    without one (the reference) take part in every round. A stopper's side whose first process fails leaves the
    rotation too, with the error in :attr:`Side.failure`; any other side's failure ends the interleave. A scenario
    also ends, after at least ``plan.min_rounds`` rounds, once it has used ``plan.seconds_per_side`` per side.
    Each side stopped early took the first rounds of the scenario, so its slices pair with the other sides' by index.
    """
    sides = [_as_side(s) for s in servers]
    stoppers = dict(stoppers or {})
    out: dict[str, dict[str, list[list[float]]]] = {s.name: {sc.name: [] for sc in scenarios} for s in sides}
    strides, stride = [], 1
    for side in sides:
        strides.append(stride)
        stride *= len(side.servers)
    for scenario in scenarios:
        seconds, calls = plan.slice_budget(scenario)
        active = [i for i, side in enumerate(sides) if side.failure is None]
        for side in sides:
            side.picked[scenario.name], side.positions[scenario.name] = [], []
        cap = plan.seconds_per_side(scenario) * len(active)
        start = time.perf_counter()
        for r in range(plan.rounds):
            centre = active.index(reference) if reference in active else None
            order = [active[a] for a in round_order(r, len(active), centre)]
            for position, i in enumerate(order):
                time.sleep(plan.gap_s)
                pick = (r // len(sides) // strides[i]) % len(sides[i].servers)
                _take(sides[i], pick, position, scenario, seconds, calls, out, sides[i].name in stoppers)
            spent = time.perf_counter() - start
            expected = min(plan.rounds, max(plan.min_rounds, int(cap / spent)))  # what the time cap allows
            active = [
                i
                for i in active
                if _goes_on(sides[i], stoppers.get(sides[i].name), scenario, r, expected, plan.min_rounds, out)
            ]
            timed_out = r + 1 >= plan.min_rounds and spent > cap
            if timed_out or (stoppers and not any(sides[i].name in stoppers for i in active)):
                for i in active:
                    if (stopper := stoppers.get(sides[i].name)) is not None:
                        stopper.ended(scenario.name, r + 1, TIME_LIMIT)
                break
        for side in sides:
            if (stopper := stoppers.get(side.name)) is not None:
                stopper.ended(scenario.name, len(out[side.name][scenario.name]))
    return out


def _take(
    side: Side,
    pick: int,
    position: int,
    scenario: ScenarioConfig,
    seconds: float,
    calls: int,
    out: dict[str, dict[str, list[list[float]]]],
    expendable: bool,
) -> None:
    """One slice of ``side`` into ``out``; an ``expendable`` side's failure is recorded on it instead of raised."""
    try:
        pick, samples = side.take_slice(pick, scenario, seconds, calls)
    except ServerError as exc:
        if not expendable:
            raise
        side.failure = exc
        return
    out[side.name][scenario.name].append(samples)
    side.picked[scenario.name].append(pick)
    side.positions[scenario.name].append(position)


def _goes_on(
    side: Side,
    stopper: RoundStopper | None,
    scenario: ScenarioConfig,
    round_index: int,
    expected: int,
    min_rounds: int,
    out: dict[str, dict[str, list[list[float]]]],
) -> bool:
    """Whether ``side`` takes part in the next round: not if it failed, or if its stopper ends its rounds here.

    ``expected``: the rounds the scenario's time cap allows, which the stopper plans its looks over after round one.
    """
    if side.failure is not None:
        if stopper is not None:
            stopper.withdraw()
        return False
    if stopper is None:
        return True
    if round_index == 0:
        stopper.expect(scenario.name, expected, min_rounds)
    return not stopper.at_look(scenario.name, round_index + 1, out)
