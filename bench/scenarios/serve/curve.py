"""``serve_curve.png``: p99 latency against the scheduled rate, one line per variant (its best configuration's
trials), the bound as a line: where each variant's latency turns up as its load grows."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _points(row: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    search = row.get("serve_search") or {}
    best = search.get("best")
    configs = search.get("configs") or []
    chosen = best or (configs[0] if configs else {})
    points = [p for p in chosen.get("curve") or [] if p.get("p99_ms") is not None]
    return str(chosen.get("label") or ""), sorted(points, key=lambda p: p["rate"])


def serve_curve(rows: list[Mapping[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    bounds = set()
    for row in rows:
        label, points = _points(row)
        if not points:
            continue
        bounds.add(float(row.get("serve_slo_ms") or 0))
        line = ax.plot([p["rate"] for p in points], [p["p99_ms"] for p in points], marker="", linewidth=1)[0]
        color = line.get_color()
        held = [p for p in points if p.get("valid")]
        missed = [p for p in points if not p.get("valid")]
        ax.scatter([p["rate"] for p in held], [p["p99_ms"] for p in held], color=color, s=25,
                   label=f"{row.get('variant')} ({label})")  # fmt: skip
        ax.scatter([p["rate"] for p in missed], [p["p99_ms"] for p in missed], facecolors="none", edgecolors=color,
                   s=25)  # fmt: skip
    for bound in sorted(b for b in bounds if b > 0):
        ax.axhline(bound, color="#d62728", linestyle=":", linewidth=1, label=f"bound: p99 {bound:.3g} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("scheduled rate, requests per second (Poisson arrivals)")
    ax.set_ylabel("p99 latency from scheduled arrival, ms")
    ax.set_title("serving: p99 against rate (filled: the trial held the bound)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
