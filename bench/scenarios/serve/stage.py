"""Which variants the serving stage measures, and at which bound: fp32 (rates compare as ratios to it) and the
answer's top ``--serve-top`` variants within the budget, fastest first, each with an equal share of
``--serve-minutes``; the bound is ``--slo-ms``, else ten times fp32's batch-1 p50 of the same run."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from bench.scenarios.base import StageConflict, num
from bench.scenarios.serve.options import SLO_FACTOR

SEARCH_SHARE = 0.85  # of each variant's share: the rest loads the copies and warms every batch size


@dataclasses.dataclass
class Plan:
    config: Any  # the scenario configuration with the bound and the per-variant budget filled in
    recipes: list[str]
    skipped: list[str]
    bound_note: str
    done: list[str]


def plan(cfg: Any, rows: list[Mapping[str, Any]], device: str, reference: str) -> Plan:
    """The stage's variants and bound from the sweep's rows (``cfg``: the run's serve configuration)."""
    from bench.report.leaderboard import build_leaderboard

    df = build_leaderboard([r for r in rows if r.get("device") == device and r.get("scenario") != cfg.name])
    ok = df[df["status"] == "ok"]
    fits = ok[ok["within_budget"].isna() | ok["within_budget"].fillna(False).astype(bool)]
    ranked = [str(v) for v in fits["variant"] if v != reference]
    top = int(cfg.options["top"])
    chosen = [reference, *ranked[:top]] if reference in set(ok["variant"]) else ranked[:top]
    skipped = [v for v in ranked[top:]] + [str(v) for v in ok["variant"] if str(v) not in ranked and v != reference]
    slo = cfg.options.get("slo_ms")
    if slo:
        note = f"p99 <= {slo:g} ms (--slo-ms)"
    else:
        ref = ok[ok["variant"] == reference]
        p50 = num(ref.iloc[0]["p50_ms"]) if not ref.empty else math.nan
        if not p50 > 0:
            raise ValueError("fp32 has no batch-1 p50 to derive the bound from: give --slo-ms")
        slo = float(f"{SLO_FACTOR * p50:.3g}")
        note = f"p99 <= {slo:g} ms ({SLO_FACTOR:g} x fp32's batch-1 p50 of {p50:.3g} ms; --slo-ms sets another)"
    done = _done_at(rows, cfg.name, slo)
    todo = [r for r in chosen if r not in done]
    share = cfg.options["minutes"] * 60 / max(1, len(todo))
    options = {**cfg.options, "slo_ms": slo, "budget_s": max(5.0, SEARCH_SHARE * share)}
    config = dataclasses.replace(cfg, options=options)
    return Plan(config, todo, skipped, note, done)


def _done_at(rows: list[Mapping[str, Any]], name: str, slo: float) -> list[str]:
    """The variants already served at this bound (a resumed run); rows at another bound are refused: one run holds
    one bound, so its serving columns compare."""
    served = [r for r in rows if r.get("scenario") == name and r.get("status") == "ok"]
    other = sorted({float(r["serve_slo_ms"]) for r in served if not math.isclose(float(r["serve_slo_ms"]), slo)})
    if other:
        raise StageConflict(
            f"this run was served at p99 <= {', '.join(f'{b:g}' for b in other)} ms; another bound ({slo:g} ms) is a "
            "new run (--run-id)"
        )
    return sorted({str(r["recipe"]) for r in served})
