"""The one answer users came for: the fastest variant within the top-1 budget on this hardware (the best one, not
the first that passes), decided by the ranking scenario's paired speedups where the sweep has them; each of the
run's scenarios adds its own figures to the line."""

from __future__ import annotations

import math

import pandas as pd

from bench.report.leaderboard import REFERENCE, num, paced
from bench.scenarios import in_rows, ranking


def _measured(df: pd.DataFrame, device: str | None) -> pd.DataFrame:
    column = ranking().headline_column
    ok = df[(df["status"] == "ok") & df[column].map(num).notna()] if column in df.columns else df.iloc[0:0]
    return ok[ok["device"] == device] if device else ok


def _fastest(pool: pd.DataFrame) -> pd.Series:
    """Best ranking figure at fp32's pace (:func:`paced`); exact ties broken by p90, then smaller artifact, then name.

    Unpaired, that is each variant's own figure. Interleaved, the speedup was measured against fp32 at the same
    moments while the figures were taken minutes apart on a machine whose speed drifts, so the speedup decides.
    fp32 is always in the pool when the speedups exist (its top-1 drop is 0), so the pace is known.
    """
    rank = ranking()
    key = paced(pool, rank)
    pool = pool.assign(
        _key=-key if rank.higher_is_better else key,
        _p90=pool["p90_ms"].map(num).fillna(math.inf) if "p90_ms" in pool.columns else math.inf,
        _size=pool["size_mb"].map(num).fillna(math.inf),
    )
    return pool.sort_values(["_key", "_p90", "_size", "variant"], kind="stable").iloc[0]


def best_within_budget(df: pd.DataFrame, device: str | None = None) -> pd.Series | None:
    """The fastest variant whose top-1 drop fits the budget (ties by p90, then size).

    The whole pool is searched, not the first variant that passes. When no accuracy was measured at all
    (random init) the fastest measured variant is returned; when accuracy was measured but the fp32
    reference is missing, the budget cannot be checked and None is returned (see :func:`answer_line`).
    """
    ok = _measured(df, device)
    if ok.empty:
        return None
    known = ok[ok["within_budget"].notna()]
    if known.empty:
        if ok["top1"].map(num).notna().any():
            return None  # accuracy measured, but no reference to measure the drop against
        return _fastest(ok)
    pool = known[known["within_budget"].astype(bool)]
    return None if pool.empty else _fastest(pool)


def _figures(best: pd.Series, scenarios: list, nothing_faster: bool) -> str:
    """The chosen variant's figures, the ranking scenario's first."""
    first = best["variant"] == REFERENCE and nothing_faster
    ordered = sorted(scenarios, key=lambda s: not s.ranks)
    return "".join(s.answer_text(best, first and s.ranks) for s in ordered)


def _faster_over_budget(ok: pd.DataFrame, best: pd.Series, max_drop: float) -> str:
    """When fp32 is the answer although variants ran faster: which, and by how much they missed the budget (else
    the answer would read as if nothing beat fp32)."""
    if best["variant"] != REFERENCE or "within_budget" not in ok.columns:
        return ""
    rank = ranking()
    key = paced(ok, rank)
    ref = key[ok["variant"] == REFERENCE]
    if ref.empty:
        return ""
    faster = ok[(key > ref.iloc[0]) if rank.higher_is_better else (key < ref.iloc[0])]
    over = faster[faster["within_budget"].notna() & ~faster["within_budget"].astype(bool)]
    if over.empty:
        return ""
    over = over.assign(_k=key[over.index]).sort_values("_k", ascending=not rank.higher_is_better, kind="stable")
    shown = ", ".join(
        f"{r['variant']} ({num(r.get(rank.speedup_column)):.2f}x, drop {num(r.get('top1_drop')):.2f})"
        for _, r in over.head(3).iterrows()
    )
    more = f" and {len(over) - 3} more" if len(over) > 3 else ""
    return f"; every faster variant is over the {max_drop:g}-point budget: {shown}{more}"


def answer_line(df: pd.DataFrame, max_drop: float, device: str | None = None, scenarios: list | None = None) -> str:
    """The one line: which variant to ship on this hardware within the top-1 budget."""
    scenarios = in_rows([]) if scenarios is None else scenarios
    where = f" on {device}" if device else ""
    ok = _measured(df, device)
    best = best_within_budget(df, device)
    if best is None:
        if ok.empty:
            return f"no variant{where} was measured successfully; see the failures in the leaderboard"
        if not ok["within_budget"].notna().any():
            fastest = _fastest(ok)
            return (
                f"cannot check the {max_drop:g}-point top-1 budget{where}: the fp32 reference was not measured; "
                f"fastest measured: {fastest['variant']} ({ranking().answer_text(fastest, False).split(',')[0]}, "
                f"top-1 {num(fastest.get('top1')):.2f}%)"
            )
        closest = ok.assign(_d=ok["top1_drop"].map(num)).sort_values("_d", kind="stable").iloc[0]
        return (
            f"no variant{where} stays within the {max_drop:g}-point top-1 budget; the smallest drop is "
            f"{closest['variant']} ({num(closest['top1_drop']):.2f} points); see the leaderboard"
        )
    top1 = num(best.get("top1"))
    if math.isnan(top1):
        acc = "accuracy not measured (speed only)"
    else:
        drop = num(best.get("top1_drop"))
        acc = f"top-1 {top1:.2f}%" + (f", drop {drop:.2f} points" if not math.isnan(drop) else "")
    budget = f"within {max_drop:g}-point top-1 budget" if not math.isnan(top1) else "(no accuracy budget: speed only)"
    over = _faster_over_budget(ok, best, max_drop)
    return f"fastest {budget}{where}: {best['variant']} — {_figures(best, scenarios, not over)}; {acc}{over}"
