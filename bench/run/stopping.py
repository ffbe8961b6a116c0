"""The coordinator's side of sequential stopping: at each planned look, may this variant's rounds stop, and why
did they stop (:mod:`bench.measure.sequential` holds the rule and why its intervals stay honest).

The variants a sweep measured before this one are its rivals: the fp32 reference (speedup 1 exactly) and every
earlier variant's paired interval. Each row then records how many rounds it got and why they ended.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from bench.measure import paired_stats
from bench.measure.sequential import DEFAULT_HALF_WIDTH, MAXIMUM, Looks, Rival, stop_reason
from bench.scenarios import get as get_scenario
from optim.registry import REFERENCE


def _top1(row: Mapping[str, Any]) -> float | None:
    value = row.get("top1")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def rivals_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Rival]]:
    """Per scenario, what the variants measured so far show: their speedup intervals' low ends (fp32 itself is
    added where the rounds are planned, :func:`bench.run.pairing.measure_group`, since it is a rival even before
    any variant was measured)."""
    out: dict[str, list[Rival]] = {}
    for row in rows:
        paired = row.get("paired") or {}
        ci = paired.get("ci95")
        if row.get("status") != "ok" or not ci or not ci[1] or row.get("scenario") in (None, "*"):
            continue
        speedup_low = get_scenario(row["scenario"]).speedup_from_time_ratio(float(ci[1]))
        out.setdefault(row["scenario"], []).append(Rival(row["recipe"], speedup_low, _top1(row)))
    return out


def with_reference(
    rivals: Mapping[str, list[Rival]], scenarios: Iterable[str], reference_top1: float | None
) -> dict[str, list[Rival]]:
    """A new rivals table for one group's rounds: ``rivals`` and fp32 itself (speedup 1 exactly) in every scenario,
    so that a variant slower than fp32 with no better top-1 stops even in the first group, before any other
    variant was measured."""
    return {name: [*rivals.get(name, ()), Rival(REFERENCE, 1.0, reference_top1)] for name in scenarios}


class RoundStopper:
    """Asked after every round of a paired scenario whether its rounds may stop; keeps (rounds, reason) per scenario.

    ``top1``: the variant's own, when its builder measured it before timing began (None otherwise, and then only
    a tight interval stops it where the run measures accuracy). ``rivals`` is shared, not copied: the stoppers of
    variants timed in the same rounds see each other's interval at every look, not only once one stops. That is as
    safe as settling against a variant measured before: a repeated confidence interval covers at all its looks at
    once, so the interval a partner shows at any look holds with the same 95%.
    """

    def __init__(
        self,
        looks: Looks,
        sides: tuple[str, str],
        rivals: Mapping[str, list[Rival]] | None = None,
        top1: float | None = None,
        compare_top1: bool = True,
        target: float = DEFAULT_HALF_WIDTH,
    ) -> None:
        self.looks, self.sides = looks, sides
        self.rivals: dict[str, list[Rival]] = rivals if isinstance(rivals, dict) else dict(rivals or {})
        self.top1, self.compare_top1, self.target = top1, compare_top1, target
        self.stopped: dict[str, tuple[int, str]] = {}
        self.planned: dict[str, Looks] = {}  # per scenario, once its time cap says how many rounds it can get

    def looks_for(self, scenario: str) -> Looks:
        return self.planned.get(scenario, self.looks)

    def expect(self, scenario: str, rounds: int, min_rounds: int) -> None:
        """The scenario's time cap allows about ``rounds`` rounds (from the first round's length): plan the looks
        over those, so a slow scenario is looked at before its time runs out. The first round's length depends on
        the two models' speeds, not on the noise of the ratio, so the looks stay fixed in advance as the per-look
        level needs."""
        if len(self.looks.rounds) > 1 and rounds < self.looks.rounds[-1]:
            self.planned[scenario] = Looks.planned(rounds, min_rounds)

    def at_look(self, scenario: str, rounds: int, slices: Mapping[str, Mapping[str, list[list[float]]]]) -> bool:
        """True when the rounds of ``scenario`` may stop now (a planned look, and the rule says so)."""
        looks = self.looks_for(scenario)
        if not looks.may_stop_at(rounds):
            return False
        ref, side = self.sides
        est = paired_stats.estimate(slices[ref][scenario], slices[side][scenario], alpha=looks.alpha)
        if est is None:
            return False
        to_speedup = get_scenario(scenario).speedup_from_time_ratio
        speedup, low, high = to_speedup(est.ratio), to_speedup(est.ci_high), to_speedup(est.ci_low)
        entries = self.rivals.setdefault(scenario, [])
        others = [r for r in entries if r.recipe != side]
        reason = stop_reason(speedup, low, high, self.target, others, self.top1, self.compare_top1)
        entries[:] = [*others, Rival(side, low, self.top1)]  # this look's interval, for the variants timed with it
        if reason:
            self.stopped[scenario] = (rounds, reason)
        return reason is not None

    def withdraw(self) -> None:
        """The variant failed: its intervals settle nothing any more."""
        side = self.sides[1]
        for entries in self.rivals.values():
            entries[:] = [r for r in entries if r.recipe != side]

    def ended(self, scenario: str, rounds: int, reason: str = MAXIMUM) -> None:
        """The rounds ran out (``maximum``) or the scenario's time cap ended them."""
        self.stopped.setdefault(scenario, (rounds, reason))

    def fields(self, scenario: str) -> dict[str, Any]:
        """The row's ``rounds`` and ``stopped``."""
        rounds, reason = self.stopped.get(scenario, (None, None))
        return {"rounds": rounds, "stopped": reason} if rounds is not None else {}
