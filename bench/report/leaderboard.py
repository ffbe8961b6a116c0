"""Result rows into the leaderboard: one line per variant and device, its speedups (paired where the sweep paired
them), its top-1 drop, whether it fits the budget, and a note that says why it failed, is slower or over budget.
The answer is in :mod:`bench.report.answer`, the files in :mod:`bench.report.tables`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

REFERENCE = "fp32"
COLUMNS = [
    "variant",
    "device",
    "status",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "cov",
    "throughput_img_s",
    "throughput_batch",
    "speedup_vs_fp32",
    "throughput_speedup_vs_fp32",
    "speedup_ci95_low",
    "speedup_ci95_high",
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


def num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _variant_record(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r.get("status") == "ok"]
    first = (ok or rows)[-1]
    rec: dict[str, Any] = {
        "variant": first.get("variant"),
        "device": first.get("device"),
        "status": first.get("status"),
    }
    if not ok:
        rec["note"] = first.get("error") or first.get("reason") or ""
        return rec
    by_scenario = {r.get("scenario"): r for r in ok}
    lat, thr = by_scenario.get("latency"), by_scenario.get("throughput")
    if lat:
        rec.update(
            p50_ms=lat.get("p50_ms"),
            p90_ms=lat.get("p90_ms"),
            p99_ms=lat.get("p99_ms"),
            cov=lat.get("cov"),
        )
        if "device_p50_ms" in lat:
            rec["device_p50_ms"] = lat["device_p50_ms"]
    if thr:
        rec.update(throughput_img_s=thr.get("throughput_img_s"), throughput_batch=thr.get("batch_size"))
        if "device_throughput_img_s" in thr:
            rec["device_throughput_img_s"] = thr["device_throughput_img_s"]
    process_notes: list[str] = []
    # Timed interleaved with the fp32 reference (python -m bench, default): the speedup is the median of the
    # per-round ratios, which the machine's drift cancels out of; the quotient of two p50s does not.
    for scenario, row in (("latency", lat), ("throughput", thr)):
        paired = (row or {}).get("paired")
        if isinstance(paired, dict) and num(paired.get("time_ratio")) > 0:
            key = "speedup_vs_fp32" if scenario == "latency" else "throughput_speedup_vs_fp32"
            rec["_paired_" + key] = 1.0 / num(paired["time_ratio"])
            ci = paired.get("ci95") or []
            if scenario == "latency" and len(ci) == 2 and num(ci[0]) > 0 and num(ci[1]) > 0:
                rec["speedup_ci95_low"], rec["speedup_ci95_high"] = 1 / num(ci[1]), 1 / num(ci[0])
            if disagreement := _process_disagreement(paired, scenario):
                process_notes.append(disagreement)
            if disturbed := _order_dependence(paired, scenario):
                process_notes.append(disturbed)
    for key in ("top1", "top5", "agreement", "size_mb", "build_s", "first_call_ms", "peak_rss_mb", "accuracy_note"):
        if first.get(key) is not None:
            rec[key] = first[key]
    notes = [r["note"] for r in ok if r.get("note")]
    rec["note"] = "; ".join([*dict.fromkeys(notes), *process_notes])
    return rec


# A variant's processes disagree "for real" when their round ratios differ at this level (bench.measure.paired_stats).
PROCESS_DIFFER_ALPHA = 0.01


def _process_disagreement(paired: dict[str, Any], scenario: str) -> str | None:
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
    where = "batch 1" if scenario == "latency" else "throughput"
    return (
        f"its {len(ratios)} processes read {speeds} at {where} ({spread:.0f}% apart, p={p:.2g}): "
        "less certain than its interval"
    )


# A round ratio that moves by more than this with the order inside the round means one side disturbed the other.
ORDER_EFFECT_MIN = math.log(1.10)


def _order_dependence(paired: dict[str, Any], scenario: str) -> str | None:
    """A note when the round ratio depends on which side went first (bench.measure.paired_stats.order_effect).

    A fair pair reads the same in either order. Without the idle wait (bench.measure.quiesce), ORT's spinning pool
    slowed the fp32 slice that followed it, and ORT speedups read too high; this note is how such interference
    shows up again.
    """
    diff, p = num(paired.get("order_log_diff")), num(paired.get("order_p"))
    if math.isnan(diff) or math.isnan(p) or p >= PROCESS_DIFFER_ALPHA or abs(diff) < ORDER_EFFECT_MIN:
        return None
    where = "batch 1" if scenario == "latency" else "throughput"
    return (
        f"its rounds at {where} read {math.exp(abs(diff)):.2f}x apart by which side went first (p={p:.2g}): "
        "one process disturbed the other; the speedup is unreliable"
    )


def build_leaderboard(rows: Iterable[dict[str, Any]], max_drop: float = 1.0) -> pd.DataFrame:
    """One line per variant and device, sorted by batch-1 latency; failures and slow variants stay visible."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row.get("variant")), str(row.get("device"))), []).append(row)
    records = [_variant_record(g) for g in groups.values()]
    df = pd.DataFrame(records)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = math.nan if col not in TEXT_COLUMNS else ""
    df["note"] = df["note"].fillna("").astype(str)
    for device in df["device"].unique():
        on_device = df["device"] == device
        ref = df[on_device & (df["variant"] == REFERENCE) & (df["status"] == "ok")]
        if ref.empty:
            continue
        ref = ref.iloc[0]
        df.loc[on_device, "speedup_vs_fp32"] = num(ref["p50_ms"]) / df.loc[on_device, "p50_ms"].map(num)
        df.loc[on_device, "throughput_speedup_vs_fp32"] = df.loc[on_device, "throughput_img_s"].map(num) / num(
            ref["throughput_img_s"]
        )
        for key in ("speedup_vs_fp32", "throughput_speedup_vs_fp32"):
            paired_col = "_paired_" + key
            if paired_col in df.columns:
                has = on_device & df[paired_col].map(num).notna()
                df.loc[has, key] = df.loc[has, paired_col].map(num)
        df.loc[on_device & (df["variant"] == REFERENCE), ["speedup_vs_fp32", "throughput_speedup_vs_fp32"]] = 1.0
        if not math.isnan(num(ref.get("top1"))):
            df.loc[on_device, "top1_drop"] = num(ref["top1"]) - df.loc[on_device, "top1"].map(num)
    df["within_budget"] = pd.array([_budget_flag(r, max_drop) for r in df.to_dict("records")], dtype="boolean")
    df["note"] = [_explain(r, max_drop) for r in df.to_dict("records")]
    status_order = df["status"].map({"ok": 0, "failed": 1, "skipped": 2}).fillna(3)
    df = df.assign(_s=status_order, _l=paced(df, "latency").fillna(math.inf))
    df = df.sort_values(["_s", "_l", "variant"], kind="stable").drop(columns=["_s", "_l"]).reset_index(drop=True)
    df = df.drop(columns=[c for c in df.columns if c.startswith("_paired_")])
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra]


def paced(df: pd.DataFrame, scenario: str) -> pd.Series:
    """Batch-1 p50 (``latency``) or img/s (``throughput``) at fp32's pace: fp32's figure scaled by the speedup.

    Timed alone, this is each variant's own figure (its speedup is fp32's figure over its own). Timed
    interleaved, the speedup was measured against fp32 at the same moments, while the absolute figures were
    taken minutes apart on a machine whose speed drifts: ordering and plotting by the paced figure keeps every
    output in the order the paired speedups give (see ``_fastest``).
    """
    column, speedup = (
        ("p50_ms", "speedup_vs_fp32") if scenario == "latency" else ("throughput_img_s", "throughput_speedup_vs_fp32")
    )
    out = df[column].map(num)
    for device in df["device"].unique():
        ref = df[(df["device"] == device) & (df["variant"] == REFERENCE) & (df["status"] == "ok")]
        if ref.empty or math.isnan(num(ref.iloc[0][column])):
            continue
        on = (df["device"] == device) & df[speedup].map(num).gt(0)
        factor = df.loc[on, speedup].map(num)
        base = num(ref.iloc[0][column])
        out[on] = base / factor if scenario == "latency" else base * factor
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


def _explain(rec: dict[str, Any], max_drop: float) -> str:
    parts = [str(rec.get("note") or "")] if rec.get("note") else []
    if rec.get("status") == "failed":
        return f"failed: {rec.get('note') or 'no reason recorded'}"
    if rec.get("status") == "skipped":
        return f"skipped: {rec.get('note') or ''}"
    speed = num(rec.get("speedup_vs_fp32"))
    if rec.get("variant") != REFERENCE and not math.isnan(speed) and speed < 1.0:
        parts.append(f"slower than fp32 at batch 1 ({speed:.2f}x)")
    tspeed = num(rec.get("throughput_speedup_vs_fp32"))
    if rec.get("variant") != REFERENCE and not math.isnan(tspeed) and tspeed < 1.0:
        parts.append(f"lower throughput than fp32 ({tspeed:.2f}x)")
    if over_budget(rec):
        parts.append(f"over budget: top-1 drop {num(rec.get('top1_drop')):.2f} > {max_drop:g} points")
    if rec.get("accuracy_note"):
        parts.append(str(rec["accuracy_note"]))
    return "; ".join(p for p in parts if p)
