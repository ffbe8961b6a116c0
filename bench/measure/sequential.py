"""When a variant's paired timing may stop, and an interval that stays honest when it stops early.

A fixed round count spends as long on a variant whose interval is already narrow, or which is plainly slower than
a variant measured before it, as on the two that decide the answer. So the rounds are examined at a few planned
looks (a quarter, a half, three quarters and all of the maximum; none before the minimum), and a scenario's
timing stops at the first look where its paired speedup interval is

- **tight**: its half-width is at most ``half_width`` of the estimate (3% by default), or
- **settled**: wholly below the interval of a variant measured earlier whose top-1 is at least as high, so it can
  be neither the answer nor on the speed/top-1 front.

Looking several times and stopping when the interval looks good would make a plain 95% interval cover less than
95% of the time. Each look therefore uses Pocock's constant per-look level for that number of looks (4 looks:
1.82% two-sided per look), chosen so that the intervals of all looks *together* cover the true ratio with 95%
probability. Whichever look a rule stops at, the interval it reports then covers with at least 95%, whatever the
rule looked at: repeated confidence intervals (Jennison and Turnbull). Why not Bonferroni (alpha/4 per look): the
looks share their rounds, so it is more conservative than needed; why not a confidence sequence valid at every
round: it is wider still, and four looks lose little against looking every round (docs/measurement.md, with the
coverage measured by simulation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided per-look level that gives 95% over K equally spaced looks of a normal statistic (Pocock 1977).
POCOCK_ALPHA = {1: 0.05, 2: 0.0294, 3: 0.0221, 4: 0.0182}
MAX_LOOKS = 4
DEFAULT_HALF_WIDTH = 0.03

TIGHT, SETTLED, MAXIMUM, TIME_LIMIT = "tight", "settled", "maximum", "time limit"


@dataclass(frozen=True)
class Looks:
    """The rounds after which the interval is examined, and the per-look level that keeps 95% over all of them."""

    rounds: tuple[int, ...]

    @property
    def alpha(self) -> float:
        return POCOCK_ALPHA[max(1, len(self.rounds))]

    def may_stop_at(self, rounds: int) -> bool:
        """Whether ``rounds`` is a look at which the rule may stop (never with a single, final look)."""
        return len(self.rounds) > 1 and rounds in self.rounds

    @staticmethod
    def planned(max_rounds: int, min_rounds: int, sequential: bool = True) -> Looks:
        """Up to four looks at quarters of ``max_rounds``, none before ``min_rounds``; one at the end if not
        ``sequential`` (``--precise``: a fixed count, and the plain 95% interval)."""
        if not sequential:
            return Looks((max_rounds,))
        floor = min(max(1, min_rounds), max_rounds)
        points = {max(floor, math.ceil(max_rounds * k / MAX_LOOKS)) for k in range(1, MAX_LOOKS + 1)}
        return Looks(tuple(sorted(points)))


@dataclass(frozen=True)
class Rival:
    """A variant measured earlier, in one scenario: the low end of its speedup interval and its top-1."""

    recipe: str
    speedup_low: float
    top1: float | None


def half_width(estimate: float, low: float, high: float) -> float:
    """Half the interval's width, relative to the estimate."""
    return (high - low) / (2 * estimate) if estimate > 0 else math.inf


def settled_by(speedup_high: float, top1: float | None, rivals: Sequence[Rival], compare_top1: bool) -> str | None:
    """The earlier variant that beats this one for certain, or None.

    It beats it when its speedup interval lies wholly above this one's and, where the run measures accuracy
    (``compare_top1``), its top-1 is known and at least as high: then this variant is neither the fastest within
    any budget nor on the speed/top-1 front. Where this variant's top-1 is not known yet, nothing beats it.
    """
    for rival in rivals:
        if not rival.speedup_low > speedup_high:
            continue
        if not compare_top1:
            return rival.recipe
        if top1 is not None and rival.top1 is not None and rival.top1 >= top1:
            return rival.recipe
    return None


def stop_reason(
    estimate: float,
    low: float,
    high: float,
    target: float,
    rivals: Sequence[Rival] = (),
    top1: float | None = None,
    compare_top1: bool = True,
) -> str | None:
    """Why timing may stop at this look (``estimate``, ``low``, ``high``: the speedup and its per-look interval)."""
    if half_width(estimate, low, high) <= target:
        return TIGHT
    if (beaten_by := settled_by(high, top1, rivals, compare_top1)) is not None:
        return f"{SETTLED} (below {beaten_by})"
    return None
