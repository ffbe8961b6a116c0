"""``pareto.png``: one panel per scenario of the run: the ranking one (batch-1 latency) against top-1 with the
Pareto front, the others as bars.

The picture answers the same question as the answer line, but shows the trade-off: which variants are
dominated (slower *and* less accurate than another), which are over the top-1 budget (red crosses) and
which are slower than FP32 (orange rings, said in the label too). Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.leaderboard import REFERENCE, over_budget

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
    speed = _num(rec.get("_speedup"))
    if rec["variant"] != REFERENCE and speed < 1.0:
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


def _point(ax, rec: dict[str, Any], x: float, y: float) -> None:
    """One variant on a front panel: the reference a star, over budget a cross, slower than fp32 ringed."""
    if rec["variant"] == REFERENCE:
        ax.scatter(x, y, marker="*", s=220, color=COLORS["ref"], zorder=4, label="fp32 reference")
    elif over_budget(rec):
        ax.scatter(x, y, marker="x", s=90, color=COLORS["over"], zorder=3, label="over the top-1 budget")
    else:
        ax.scatter(x, y, s=60, color=COLORS["ok"], zorder=3, label="within budget")
    speed = _num(rec.get("_speedup"))
    if rec["variant"] != REFERENCE and speed < 1.0:
        ax.scatter(
            x,
            y,
            s=260,
            facecolors="none",
            edgecolors=COLORS["slower"],
            linewidths=2,
            zorder=2,
            label="slower than fp32",
        )


def _front_panel(ax, records: list[dict[str, Any]], scenario: Any, max_drop: float, many_devices: bool) -> list[str]:
    """The scenario's figure against top-1 with the Pareto front; returns its key ("1. fp32", ...): points are
    numbered, names listed below the figure."""
    has_acc = [r for r in records if not math.isnan(_num(r.get("top1")))]
    if not has_acc:
        _bars_panel(ax, records, scenario, many_devices, title_note=" (accuracy not measured: no top-1 axis)")
        return []
    sign = -1 if scenario.higher_is_better else 1
    has_acc.sort(key=lambda r: sign * _num(r["_x"]))
    key, numbered = [], []
    for index, rec in enumerate(has_acc, start=1):
        x, top1 = _num(rec["_x"]), _num(rec["top1"])
        _point(ax, rec, x, top1)
        numbered.append((x, top1, str(index)))
        key.append(f"{index}. {_label(rec, many_devices).replace(chr(10), ', ')}")
    front = pareto_front([(sign * _num(r["_x"]), _num(r["top1"])) for r in has_acc])
    xs, ys = zip(*((sign * x, y) for x, y in front), strict=True)
    ax.step(xs, ys, where="post", color="#2ca02c", linestyle="--", linewidth=1.2, zorder=1)
    ax.scatter(xs, ys, s=140, facecolors="none", edgecolors="#2ca02c", linewidths=1.5, zorder=2, label="Pareto front")
    ref = [r for r in has_acc if r["variant"] == REFERENCE]
    if ref:
        budget = _num(ref[0]["top1"]) - max_drop
        ax.axhline(budget, color=COLORS["over"], linestyle=":", linewidth=1, label=f"budget: fp32 - {max_drop:g} pt")
    _log_if_wide(ax, [_num(r["_x"]) for r in has_acc])
    ax.set_xlabel(scenario.axis_label)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"{scenario.name} vs top-1 (points numbered, names below)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    # outside the axes, below them: inside, it covered the fp32 star on most runs
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.08, y=0.12)  # room for the numbers beside the outermost points, inside the frame
    _place_numbers(ax, numbered)
    return key


def _log_if_wide(ax, values: list[float]) -> None:
    """One very slow variant (e.g. emulated BF16) must not flatten every other point or bar."""
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)


def _bars_panel(ax, records: list[dict[str, Any]], scenario: Any, many_devices: bool, title_note: str = "") -> list:
    """The scenario's figure as horizontal bars, best first, fp32 marked with a line."""
    records = [r for r in records if not math.isnan(_num(r.get("_x")))]
    if not records:
        ax.text(0.5, 0.5, f"no {scenario.name} measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return []
    sign = -1 if scenario.higher_is_better else 1
    records.sort(key=lambda r: sign * _num(r["_x"]))
    names, values, colors = [], [], []
    for rec in records:
        speed = _num(rec.get("_speedup"))
        name = str(rec["variant"]) + (f" ({rec['device']})" if many_devices else "")
        if rec["variant"] == REFERENCE:
            color = COLORS["ref"]
        elif over_budget(rec):
            color, name = COLORS["over"], name + " [over budget]"
        elif speed < 1.0:
            color, name = COLORS["slower"], name + f" [slower than fp32, {speed:.2f}x]"
        else:
            color = COLORS["ok"]
        names.append(name)
        values.append(_num(rec["_x"]))
        colors.append(color)
    ax.barh(names, values, color=colors)
    ax.invert_yaxis()
    ref = [r for r in records if r["variant"] == REFERENCE]
    if ref:
        ax.axvline(_num(ref[0]["_x"]), color=COLORS["ref"], linestyle=":", linewidth=1)
    _log_if_wide(ax, values)
    batches = sorted({int(_num(r["throughput_batch"])) for r in records if _num(r.get("throughput_batch")) > 0})
    ax.set_xlabel(scenario.axis_label.format(batch=f" at batch {'/'.join(map(str, batches))}" if batches else ""))
    ax.set_title(scenario.name + title_note)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    return []


def _panel_records(ok: pd.DataFrame, scenario: Any) -> list[dict[str, Any]]:
    """The measured variants with ``_x``, the scenario's figure at fp32's pace (so the plot agrees with the
    leaderboard's paired order), and ``_speedup``."""
    from bench.report.leaderboard import paced

    frame = ok.assign(_x=paced(ok, scenario), _speedup=ok.get(scenario.speedup_column, math.nan))
    return frame.to_dict("records")


def pareto_figure(df: pd.DataFrame, max_drop: float = 1.0, title: str = "", scenarios: list[Any] | None = None):
    """One panel per scenario that draws one, for the measured variants of ``df`` (a leaderboard), with the key of
    numbered points below."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from bench.scenarios import in_rows

    drawn = [s for s in (in_rows([]) if scenarios is None else scenarios) if s.panel]
    rank = next((s for s in drawn if s.ranks), drawn[0])
    ok = df[(df["status"] == "ok") & df[rank.headline_column].map(_num).notna()] if not df.empty else df
    n = len(ok)
    key_rows = math.ceil(n / 2)
    fig, axes = plt.subplots(1, len(drawn), figsize=(7 * len(drawn), max(4.5, 0.35 * n + 3.0) + 0.18 * key_rows))
    axes = list(axes) if len(drawn) > 1 else [axes]
    key: list[str] = []
    for ax, scenario in zip(axes, drawn, strict=True):
        if ok.empty:
            ax.text(0.5, 0.5, "no variant was measured successfully", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        records, many = _panel_records(ok, scenario), ok["device"].nunique() > 1
        if scenario.panel == "front":
            key += _front_panel(ax, records, scenario, max_drop, many)
        else:
            _bars_panel(ax, records, scenario, many)
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


def pareto_plot(
    df: pd.DataFrame, path: str | Path, max_drop: float = 1.0, title: str = "", scenarios: list[Any] | None = None
) -> Path:
    """Draw :func:`pareto_figure` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = pareto_figure(df, max_drop, title, scenarios)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def write(report: Any, run_dir: Path) -> dict[str, Path]:
    """``pareto.png``, and the figures of the run's scenarios that draw their own."""
    run_dir = Path(run_dir)
    files = {
        "pareto": pareto_plot(
            report.df, run_dir / "pareto.png", report.max_drop, report.title(run_dir), report.scenarios
        )
    }
    for scenario in report.scenarios:
        files.update(scenario.figures(report.df, report.rows, run_dir))
    return files
