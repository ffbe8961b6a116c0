"""Which benchmark of the baseline goes with which of the candidate: matched by (variant, scenario, device).

A variant that failed (or was skipped) writes one row for all its benchmarks (scenario ``*``). Before matching,
that row becomes the status of each benchmark the other side has for the variant, whatever scenarios the run had,
so a variant that ran in the baseline and fails now is ``BROKEN`` in every one of them, even when every variant of
the candidate failed. With nothing on the other side to go by, it stands for the default scenarios and top-1.
"""

from __future__ import annotations

from bench.gate.inputs import GateInput
from bench.gate.series import ANY, TOP1, Series, metric_order
from bench.scenarios import all_scenarios
from data.errors import InputError

Key = tuple[str, str, str]


def _expanded(side: dict[Key, Series], other: dict[Key, Series]) -> dict[Key, Series]:
    """``side`` with each variant-wide status row spread over the benchmarks of its variant and device."""
    out = {k: s for k, s in side.items() if k[1] != ANY}
    defaults = [s.name for s in all_scenarios() if s.default] + [TOP1]
    for (variant, _, device), marker in side.items():
        if marker.scenario != ANY:
            continue
        names = [k[1] for k in (*side, *other) if k[0] == variant and k[2] == device and k[1] != ANY]
        for name in dict.fromkeys(names or defaults):
            out.setdefault((variant, name, device), marker.as_status(name))
    return out


def matched(base: GateInput, cand: GateInput) -> list[tuple[Series | None, Series | None]]:
    """Every benchmark of either side with its counterpart (None where the other side lacks it): the candidate's
    in its order, then the ones only the baseline has."""
    b, c = _expanded(base.series, cand.series), _expanded(cand.series, base.series)
    keys = list(c) + [k for k in b if k not in c]
    pairs = [(b.get(k), c.get(k)) for k in keys]
    if not any(x is not None and y is not None for x, y in pairs):
        only_b = sorted(f"{s.bench_id}@{s.device}" for s in b.values())
        only_c = sorted(f"{s.bench_id}@{s.device}" for s in c.values())
        raise InputError(
            f"no benchmark is in both files (matched by variant, scenario and device): baseline has "
            f"{_listed(only_b)}; candidate has {_listed(only_c)}"
        )
    return pairs


def _listed(names: list[str]) -> str:
    if not names:
        return "nothing"
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def order_key(bench_id: str, device: str, metric: str) -> tuple[str, str, int]:
    """A report lists each device, then each variant with its scenarios in registration order, then top-1."""
    order = metric_order()
    return (device, bench_id.rsplit("/", 1)[0], order.index(metric) if metric in order else len(order))
