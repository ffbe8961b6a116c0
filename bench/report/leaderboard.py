"""Result rows into the leaderboard: one line per variant and device, each scenario's figures and speedups (paired
where the sweep paired them), its top-1 drop, whether it fits the budget, and a note that says why it failed, is
slower or over budget. The columns come from the run's scenarios (:mod:`bench.scenarios`); the answer is in
:mod:`bench.report.answer`, the files in :mod:`bench.report.tables`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from bench.scenarios import all_scenarios, in_rows
from optim.registry import REFERENCE

BASE_COLUMNS = ["variant", "device", "status"]
TRAILING_COLUMNS = [
    "top1",
    "top5",
    "top1_drop",
    "agreement",
    "size_mb",
    "build_s",
    "first_call_ms",
    "peak_rss_mb",
    "within_budget",
    "note",
]
# Columns holding words, not numbers (everything else is a metric: TensorBoard logs one tag per metric).
TEXT_COLUMNS = ("variant", "device", "status", "within_budget", "note")
ROW_FIELDS = ("top1", "top5", "agreement", "size_mb", "build_s", "first_call_ms", "peak_rss_mb", "accuracy_note")


def columns(scenarios: list[Any] | None = None) -> list[str]:
    """The leaderboard's columns for a run with ``scenarios`` (default: the scenarios every run measures): each
    scenario's figures, then their speedups, then their intervals, then accuracy and build facts."""
    scenarios = [s for s in all_scenarios() if s.default] if scenarios is None else scenarios
    figures = [c.name for s in scenarios for c in s.columns if not c.optional]
    speedups = [s.speedup_column for s in scenarios if s.speedup_column]
    intervals = [c for s in scenarios if s.interval_columns for c in s.interval_columns]
    return BASE_COLUMNS + figures + speedups + intervals + TRAILING_COLUMNS


def num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _variant_record(rows: list[dict[str, Any]], scenarios: list[Any]) -> dict[str, Any]:
    ok = [r for r in rows if r.get("status") == "ok"]
    first = (ok or rows)[-1]
    rec: dict[str, Any] = {
        "variant": first.get("variant"),
        "device": first.get("device"),
        "status": first.get("status"),
    }
    if not ok:
        rec["note"] = first.get("error") or first.get("reason") or ""
        if first.get("reason_code"):
            rec["reason_code"] = first["reason_code"]
        return rec
    by_scenario = {r.get("scenario"): r for r in ok}
    process_notes: list[str] = []
    for scenario in scenarios:
        row = by_scenario.get(scenario.name)
        if row is None:
            continue
        rec.update(scenario.record(row))
        # Timed interleaved with the fp32 reference (python -m bench, default): the speedup is the estimate of the
        # per-round ratios, which the machine's drift cancels out of; the quotient of two p50s does not.
        paired = row.get("paired")
        if scenario.speedup_column and isinstance(paired, dict) and num(paired.get("time_ratio")) > 0:
            rec["_paired_" + scenario.speedup_column] = scenario.speedup_from_time_ratio(num(paired["time_ratio"]))
            ci = paired.get("ci95") or []
            if scenario.interval_columns and len(ci) == 2 and num(ci[0]) > 0 and num(ci[1]) > 0:
                low, high = scenario.interval_columns
                rec[low], rec[high] = 1 / num(ci[1]), 1 / num(ci[0])
            for note in (_process_disagreement(paired, scenario.label), _order_dependence(paired, scenario.label)):
                if note:
                    process_notes.append(note)
    for key in ROW_FIELDS:  # the first row that has it: a staged scenario's process measures no accuracy
        value = next((r[key] for r in ok if r.get(key) is not None), None)
        if value is not None:
            rec[key] = value
    notes = [r["note"] for r in ok if r.get("note")]
    notes += [f"failed: {r.get('error')}" for r in rows if r.get("status") == "failed" and r.get("scenario") != "*"]
    rec["note"] = "; ".join([*dict.fromkeys(notes), *process_notes])
    return rec


# A variant's processes disagree "for real" when their round ratios differ at this level (bench.measure.paired_stats).
PROCESS_DIFFER_ALPHA = 0.01


def _process_disagreement(paired: dict[str, Any], where: str) -> str | None:
    """A note when the variant's measurement processes read speedups that the rounds' noise cannot explain.

    The 95% interval comes from the rounds, which share each process's lasting offset; it cannot show this.
    """
    ratios = [num(r) for r in paired.get("process_time_ratios") or []]
    ratios = [r for r in ratios if r > 0]
    p = num(paired.get("process_p"))
    if len(ratios) < 2 or math.isnan(p) or p >= PROCESS_DIFFER_ALPHA:
        return None
    speeds = ", ".join(f"{1 / r:.3g}x" for r in ratios)
    spread = (max(ratios) / min(ratios) - 1) * 100
    return (
        f"its {len(ratios)} processes read {speeds} at {where} ({spread:.0f}% apart, p={p:.2g}): "
        "less certain than its interval"
    )


# A round ratio that moves by more than this with the order inside the round means one side disturbed the other.
ORDER_EFFECT_MIN = math.log(1.10)


def _order_dependence(paired: dict[str, Any], where: str) -> str | None:
    """A note when the round ratio depends on which side went first (bench.measure.paired_stats.order_effect).

    A fair pair reads the same in either order. Without the idle wait (bench.measure.quiesce), ORT's spinning pool
    slowed the fp32 slice that followed it, and ORT speedups read too high; this note is how such interference
    shows up again.
    """
    diff, p = num(paired.get("order_log_diff")), num(paired.get("order_p"))
    if math.isnan(diff) or math.isnan(p) or p >= PROCESS_DIFFER_ALPHA or abs(diff) < ORDER_EFFECT_MIN:
        return None
    return (
        f"its rounds at {where} read {math.exp(abs(diff)):.2f}x apart by which side went first (p={p:.2g}): "
        "one process disturbed the other; the speedup is unreliable"
    )


def build_leaderboard(
    rows: Iterable[dict[str, Any]], max_drop: float = 1.0, scenarios: list[Any] | None = None
) -> pd.DataFrame:
    """One line per variant and device, sorted by the ranking scenario's paced figure; failures and slow variants stay
    visible. ``scenarios``: those of the run (default: every default scenario and any other the rows hold)."""
    rows = list(rows)
    scenarios = in_rows(rows) if scenarios is None else scenarios
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row.get("variant")), str(row.get("device"))), []).append(row)
    df = pd.DataFrame([_variant_record(g, scenarios) for g in groups.values()])
    main = columns(scenarios)
    for col in main:
        if col not in df.columns:
            df[col] = math.nan if col not in TEXT_COLUMNS else ""
    df["note"] = df["note"].fillna("").astype(str)
    for device in df["device"].unique():
        _against_reference(df, df["device"] == device, scenarios)
    df["within_budget"] = pd.array([_budget_flag(r, max_drop) for r in df.to_dict("records")], dtype="boolean")
    df["note"] = [_explain(r, max_drop, scenarios) for r in df.to_dict("records")]
    status_order = df["status"].map({"ok": 0, "failed": 1, "skipped": 2}).fillna(3)
    rank = next((s for s in scenarios if s.ranks), None)
    pace = paced(df, rank) if rank is not None else pd.Series(math.nan, index=df.index)
    df = df.assign(_s=status_order, _l=pace.fillna(math.inf))
    df = df.sort_values(["_s", "_l", "variant"], kind="stable").drop(columns=["_s", "_l"]).reset_index(drop=True)
    df = df.drop(columns=[c for c in df.columns if c.startswith("_paired_")])
    return df[main + [c for c in df.columns if c not in main]]


def _against_reference(df: pd.DataFrame, on_device: pd.Series, scenarios: list[Any]) -> None:
    """Speedups (paired where measured so, else the ratio of the figures) and top-1 drop against fp32."""
    ref = df[on_device & (df["variant"] == REFERENCE) & (df["status"] == "ok")]
    if ref.empty:
        return
    ref = ref.iloc[0]
    for scenario in scenarios:
        key = scenario.speedup_column
        if not key or scenario.headline_column not in df.columns:
            continue
        base = num(ref.get(scenario.headline_column))
        values = df.loc[on_device, scenario.headline_column]
        df.loc[on_device, key] = [scenario.speedup(num(v), base) for v in values]
        paired_col = "_paired_" + key
        if paired_col in df.columns:
            has = on_device & df[paired_col].map(num).notna()
            df.loc[has, key] = df.loc[has, paired_col].map(num)
        df.loc[on_device & (df["variant"] == REFERENCE), key] = 1.0
    if not math.isnan(num(ref.get("top1"))):
        df.loc[on_device, "top1_drop"] = num(ref["top1"]) - df.loc[on_device, "top1"].map(num)


def paced(df: pd.DataFrame, scenario: Any) -> pd.Series:
    """A scenario's figure at fp32's pace: fp32's figure scaled by the variant's speedup.

    Timed alone, this is each variant's own figure (its speedup is the ratio of the two figures). Timed
    interleaved, the speedup was measured against fp32 at the same moments, while the absolute figures were
    taken minutes apart on a machine whose speed drifts: ordering and plotting by the paced figure keeps every
    output in the order the paired speedups give.
    """
    column, speedup = scenario.headline_column, scenario.speedup_column
    if column not in df.columns:
        return pd.Series(math.nan, index=df.index)
    out = df[column].map(num)
    if not speedup or speedup not in df.columns:
        return out
    for device in df["device"].unique():
        ref = df[(df["device"] == device) & (df["variant"] == REFERENCE) & (df["status"] == "ok")]
        if ref.empty or math.isnan(num(ref.iloc[0][column])):
            continue
        on = (df["device"] == device) & df[speedup].map(num).gt(0)
        factor = df.loc[on, speedup].map(num)
        base = num(ref.iloc[0][column])
        out[on] = base * factor if scenario.higher_is_better else base / factor
    return out


def over_budget(rec: dict[str, Any]) -> bool:
    """Whether a leaderboard record is known to lose more top-1 than the budget."""
    value = rec.get("within_budget")
    return value is not None and not pd.isna(value) and not bool(value)


def _budget_flag(rec: dict[str, Any], max_drop: float) -> Any:
    """True or False where the top-1 drop is known, else missing (failed, skipped, or speed only)."""
    drop = num(rec.get("top1_drop"))
    if rec.get("status") != "ok" or math.isnan(drop):
        return pd.NA
    return bool(drop <= max_drop + 1e-9)


def _explain(rec: dict[str, Any], max_drop: float, scenarios: list[Any]) -> str:
    parts = [str(rec.get("note") or "")] if rec.get("note") else []
    if rec.get("status") == "failed":
        return f"failed: {rec.get('note') or 'no reason recorded'}"
    if rec.get("status") == "skipped":
        return f"skipped: {rec.get('note') or ''}"
    if rec.get("variant") != REFERENCE:
        parts += [note for s in scenarios if (note := s.slower_note(rec))]
    if over_budget(rec):
        parts.append(f"over budget: top-1 drop {num(rec.get('top1_drop')):.2f} > {max_drop:g} points")
    if rec.get("accuracy_note"):
        parts.append(str(rec["accuracy_note"]))
    return "; ".join(p for p in parts if p)
