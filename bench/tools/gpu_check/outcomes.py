"""Each recipe's outcome from the sweep's rows: measured (with its figures), skipped, failed, or never reached.

A stopped sweep still leaves rows; this reads them so the summary says of every planned recipe what became of it,
and builds the table that serves as the leaderboard when the sweep had no time to write its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_RAW = ("samples_ms", "slice_process", "process_samples", "device_samples_ms")


def trimmed(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its raw samples (every call's time): the figures stay, the file stays small."""
    out = {}
    for key, value in row.items():
        if key in _RAW:
            continue
        out[key] = f"<{len(value)} values left out>" if isinstance(value, list) and len(value) > 64 else value
    return out


def speedup(row: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """Paired speedup against fp32 and its 95% interval, from the row's time ratio (1 for fp32 itself)."""
    if row.get("recipe") == "fp32":
        return 1.0, None, None
    paired = row.get("paired") or {}
    ratio, ci = paired.get("time_ratio"), paired.get("ci95") or [None, None]
    if not ratio:
        return None, None, None
    return 1 / ratio, (1 / ci[1] if ci[1] else None), (1 / ci[0] if ci[0] else None)


def find_key(obj: Any, key: str) -> Any:
    """The first value stored under ``key`` anywhere in nested dicts and lists (None if absent)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for item in obj:
            found = find_key(item, key)
            if found is not None:
                return found
    return None


def _measured(entry: dict[str, Any], ok: list[dict[str, Any]]) -> None:
    """The figures of each measured scenario, and which ONNX Runtime execution provider ran."""
    entry["status"] = "measured"
    for row in ok:
        up, low, high = speedup(row)
        entry[str(row.get("scenario"))] = {
            "batch": row.get("batch_size"),
            "p50_ms": row.get("p50_ms"),
            "device_p50_ms": row.get("device_p50_ms"),
            "img_s": row.get("throughput_img_s"),
            "device_img_s": row.get("device_throughput_img_s"),
            "speedup": up,
            "ci95": [low, high],
            "build_s": row.get("build_s"),
            "note": row.get("note"),
        }
    providers = find_key(ok[0].get("manifest"), "providers")
    if providers:
        entry["providers"] = providers


def recipe_outcomes(recipes: Sequence[str], rows: list[dict[str, Any]], stopped: bool) -> list[dict[str, Any]]:
    """Per recipe: measured (with its figures), skipped or failed (with the reason), or never reached."""
    out = []
    for recipe in recipes:
        mine = [r for r in rows if r.get("recipe") == recipe]
        entry: dict[str, Any] = {"recipe": recipe}
        failed = [r for r in mine if r.get("status") == "failed"]
        skipped = [r for r in mine if r.get("status") == "skipped"]
        ok = [r for r in mine if r.get("status") == "ok"]
        if failed:
            entry.update(status="failed", reason=str(failed[0].get("error") or failed[0].get("note") or "")[:300])
        elif skipped:
            entry.update(status="skipped", reason=str(skipped[0].get("reason") or skipped[0].get("note") or "")[:300])
        elif ok:
            _measured(entry, ok)
        elif recipe == "fp32" and stopped:
            entry.update(status="not written", reason="fp32's rows are written when a sweep ends; it was stopped")
        else:
            entry.update(status="not reached", reason="the sweep was stopped at its deadline" if stopped else "")
        out.append(entry)
    return out


def num(value: Any, fmt: str = "{:.3f}") -> str:
    """A figure as the tables print it; '' where there is none."""
    return fmt.format(value) if isinstance(value, (int, float)) else ""


def _speedup_text(sc: dict[str, Any]) -> str:
    if sc.get("speedup") is None:
        return ""
    low, high = sc.get("ci95") or [None, None]
    ci = f" ({low:.2f}-{high:.2f})" if low and high else ""
    return f"{sc['speedup']:.2f}x{ci}"


def outcome_table(outcomes: list[dict[str, Any]]) -> list[str]:
    """The sweep in one table: both timings of both scenarios, paired speedups, or why a recipe has none."""
    lines = [
        "| recipe | status | b1 p50 ms e2e | b1 p50 ms device | b1 speedup (95% CI) | bN | bN img/s e2e "
        "| bN img/s device | bN speedup (95% CI) | build s | reason / note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lat, thr = o.get("latency") or {}, o.get("throughput") or {}
        note = o.get("reason") or lat.get("note") or ""
        others = [k for k, v in o.items() if isinstance(v, dict) and k not in ("latency", "throughput")]
        if others:  # a scenario added since (serve): its figures are in summary.json
            note = f"also measured: {', '.join(others)}; {note}".rstrip("; ")
        if o.get("providers"):
            note = f"providers {','.join(map(str, o['providers']))}; {note}".rstrip("; ")
        lines.append(
            f"| {o['recipe']} | {o['status']} | {num(lat.get('p50_ms'))} | {num(lat.get('device_p50_ms'))} "
            f"| {_speedup_text(lat)} | {thr.get('batch') or ''} | {num(thr.get('img_s'), '{:,.0f}')} "
            f"| {num(thr.get('device_img_s'), '{:,.0f}')} | {_speedup_text(thr)} "
            f"| {num(lat.get('build_s') or thr.get('build_s'), '{:.1f}')} | {str(note).replace('|', '/')[:160]} |"
        )
    return lines


def sweep_device_vs_e2e(outcomes: list[dict[str, Any]]) -> list[str]:
    """The sweep's own two timings per row, where device-only exceeds end-to-end (the oddity, or its absence)."""
    lines = []
    for o in outcomes:
        for sc in ("latency", "throughput"):
            fig = o.get(sc) or {}
            e2e, dev = fig.get("p50_ms"), fig.get("device_p50_ms")
            if isinstance(e2e, (int, float)) and isinstance(dev, (int, float)) and dev > e2e:
                lines.append(f"- {o['recipe']} {sc}: device-only p50 {dev:.3f} ms > end-to-end {e2e:.3f} ms")
    return lines or ["- in the sweep, no row's device-only p50 exceeds its end-to-end p50"]
