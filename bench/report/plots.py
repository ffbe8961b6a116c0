"""``pareto.png``: batch-1 latency against top-1 with the Pareto front, and throughput in a second panel.

The picture answers the same question as the answer line, but shows the trade-off: which variants are
dominated (slower *and* less accurate than another), which are over the top-1 budget (red crosses) and
which are slower than FP32 (orange rings, said in the label too). Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.leaderboard import over_budget

REFERENCE = "fp32"
COLORS = {"ok": "#1f77b4", "over": "#d62728", "slower": "#ff7f0e", "ref": "#222222"}


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (latency, top1) not dominated by another (lower-or-equal latency and higher-or-equal top-1)."""
    front: list[tuple[float, float]] = []
    best = -math.inf
    for lat, top1 in sorted(points, key=lambda p: (p[0], -p[1])):
        if top1 > best:
            front.append((lat, top1))
            best = top1
    return front


def _label(rec: dict[str, Any], many_devices: bool) -> str:
    name = str(rec["variant"]) + (f" ({rec['device']})" if many_devices else "")
    speed = _num(rec.get("speedup_vs_fp32"))
    if rec["variant"] != REFERENCE and not math.isnan(speed) and speed < 1.0:
        name += f"\nslower than fp32 ({speed:.2f}x)"
    return name


def _place_numbers(ax, points: list[tuple[float, float, str]]) -> None:
    """A small number beside each point, moved around it until it overlaps no number already placed."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    offsets = [(5, 5), (5, -12), (-14, 5), (-14, -12), (9, 14), (9, -20), (-18, 14), (-18, -20), (16, 0), (-24, 0)]
    for x, y, text in points:
        for dx, dy in offsets:
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7, weight="bold")
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            label.remove()
        else:  # crowded beyond every offset: keep the first place, the key below still names it
            placed.append(
                ax.annotate(text, (x, y), textcoords="offset points", xytext=offsets[0], fontsize=7).get_window_extent(
                    renderer
                )
            )


def _plain_log_ticks(axis) -> None:
    """Log-scale ticks written as plain numbers (0.2, 0.5, 1, 2, 5), not as 2x10^-1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _latency_panel(ax, ok: pd.DataFrame, max_drop: float, many_devices: bool) -> list[str]:
    """The latency-vs-top-1 panel; returns its key ("1. fp32", ...): points are numbered, names listed below."""
    records = ok.to_dict("records")
    has_acc = [r for r in records if not math.isnan(_num(r.get("top1")))]
    if not has_acc:
        _latency_bars(ax, records, many_devices)
        return []
    has_acc.sort(key=lambda r: _num(r["p50_ms"]))
    key, numbered = [], []
    for index, rec in enumerate(has_acc, start=1):
        lat, top1 = _num(rec["p50_ms"]), _num(rec["top1"])
        speed = _num(rec.get("speedup_vs_fp32"))
        if rec["variant"] == REFERENCE:
            ax.scatter(lat, top1, marker="*", s=220, color=COLORS["ref"], zorder=4, label="fp32 reference")
        elif over_budget(rec):
            ax.scatter(lat, top1, marker="x", s=90, color=COLORS["over"], zorder=3, label="over the top-1 budget")
        else:
            ax.scatter(lat, top1, s=60, color=COLORS["ok"], zorder=3, label="within budget")
        if rec["variant"] != REFERENCE and not math.isnan(speed) and speed < 1.0:
            ax.scatter(
                lat,
                top1,
                s=260,
                facecolors="none",
                edgecolors=COLORS["slower"],
                linewidths=2,
                zorder=2,
                label="slower than fp32",
            )
        numbered.append((lat, top1, str(index)))
        key.append(f"{index}. {_label(rec, many_devices).replace(chr(10), ', ')}")
    front = pareto_front([(_num(r["p50_ms"]), _num(r["top1"])) for r in has_acc])
    xs, ys = zip(*front, strict=True)
    ax.step(xs, ys, where="post", color="#2ca02c", linestyle="--", linewidth=1.2, zorder=1)
    ax.scatter(xs, ys, s=140, facecolors="none", edgecolors="#2ca02c", linewidths=1.5, zorder=2, label="Pareto front")
    ref = [r for r in has_acc if r["variant"] == REFERENCE]
    if ref:
        budget = _num(ref[0]["top1"]) - max_drop
        ax.axhline(budget, color=COLORS["over"], linestyle=":", linewidth=1, label=f"budget: fp32 - {max_drop:g} pt")
    lats = [_num(r["p50_ms"]) for r in has_acc]
    if min(lats) > 0 and max(lats) / min(lats) > 20:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency at batch 1, p50 in milliseconds (at fp32's pace: fp32 p50 / speedup; lower is better)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("latency vs top-1 (points numbered, names below)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.08, y=0.12)  # room for the numbers beside the outermost points, inside the frame
    _place_numbers(ax, numbered)
    return key


def _latency_bars(ax, records: list[dict[str, Any]], many_devices: bool) -> None:
    """Without accuracy (random init) there is no top-1 axis: latency bars instead, said in the title."""
    records = sorted(records, key=lambda r: _num(r["p50_ms"]))
    names = [_label(r, many_devices).replace("\n", " ") for r in records]
    values = [_num(r["p50_ms"]) for r in records]
    colors = [COLORS["ref"] if r["variant"] == REFERENCE else COLORS["ok"] for r in records]
    ax.barh(names, values, color=colors)
    ax.invert_yaxis()
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_xscale("log")  # one very slow variant (e.g. emulated BF16) must not flatten every other bar
        _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency at batch 1, p50 in milliseconds (at fp32's pace: fp32 p50 / speedup)")
    ax.set_title("latency (accuracy not measured: no top-1 axis)")
    ax.tick_params(axis="y", labelsize=7)


def _throughput_panel(ax, ok: pd.DataFrame, many_devices: bool) -> None:
    records = [r for r in ok.to_dict("records") if not math.isnan(_num(r.get("throughput_img_s")))]
    if not records:
        ax.text(0.5, 0.5, "no throughput measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    records.sort(key=lambda r: -_num(r["throughput_img_s"]))
    names, values, colors = [], [], []
    for rec in records:
        tspeed = _num(rec.get("throughput_speedup_vs_fp32"))
        name = str(rec["variant"]) + (f" ({rec['device']})" if many_devices else "")
        if rec["variant"] == REFERENCE:
            color = COLORS["ref"]
        elif over_budget(rec):
            color, name = COLORS["over"], name + " [over budget]"
        elif not math.isnan(tspeed) and tspeed < 1.0:
            color, name = COLORS["slower"], name + f" [slower than fp32, {tspeed:.2f}x]"
        else:
            color = COLORS["ok"]
        names.append(name)
        values.append(_num(rec["throughput_img_s"]))
        colors.append(color)
    ax.barh(names, values, color=colors)
    ax.invert_yaxis()
    ref = [r for r in records if r["variant"] == REFERENCE]
    if ref:
        ax.axvline(_num(ref[0]["throughput_img_s"]), color=COLORS["ref"], linestyle=":", linewidth=1)
    batches = sorted(
        {int(_num(r["throughput_batch"])) for r in records if not math.isnan(_num(r.get("throughput_batch")))}
    )
    batch_txt = f" at batch {'/'.join(map(str, batches))}" if batches else ""
    ax.set_xlabel(f"images per second{batch_txt} at fp32's pace (fp32 x speedup), higher is better")
    ax.set_title("throughput")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)


def pareto_figure(df: pd.DataFrame, max_drop: float = 1.0, title: str = ""):
    """The two panels for the measured variants of ``df`` (a leaderboard), with the key of numbered points below."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ok = df[(df["status"] == "ok") & df["p50_ms"].map(_num).notna()] if not df.empty else df
    if not ok.empty:  # positions at fp32's pace, so the plot agrees with the leaderboard's paired order
        from bench.report.leaderboard import paced

        ok = ok.assign(p50_ms=paced(ok, "latency"), throughput_img_s=paced(ok, "throughput"))
    n = len(ok)
    key_rows = math.ceil(n / 2)
    fig, axes = plt.subplots(1, 2, figsize=(14, max(4.5, 0.35 * n + 2.5) + 0.18 * key_rows))
    if ok.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no variant was measured successfully", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        key: list[str] = []
    else:
        many_devices = ok["device"].nunique() > 1
        _throughput_panel(axes[1], ok, many_devices)
        key = _latency_panel(axes[0], ok, max_drop, many_devices)
    failed = df[df["status"] != "ok"]["variant"].tolist() if not df.empty else []
    suptitle = title + (
        ("\n" if title else "") + f"not measured: {', '.join(map(str, failed))[:150]}" if failed else ""
    )
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    bottom = 0.0
    if key:
        half = math.ceil(len(key) / 2)
        for col, lines in enumerate((key[:half], key[half:])):
            fig.text(0.02 + 0.5 * col, 0.01, "\n".join(lines), fontsize=7, va="bottom", family="monospace")
        bottom = min(0.45, (0.18 * half + 0.3) / fig.get_figheight())
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def pareto_plot(df: pd.DataFrame, path: str | Path, max_drop: float = 1.0, title: str = "") -> Path:
    """Draw :func:`pareto_figure` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = pareto_figure(df, max_drop, title)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
