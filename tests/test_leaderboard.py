"""The leaderboard and its answer line on crafted rows: the best in-budget variant, not the first."""

from __future__ import annotations

import math

import pandas as pd

from bench.report.answer import answer_line, best_within_budget
from bench.report.leaderboard import build_leaderboard, columns
from bench.report.tables import write_leaderboard


def rows_for(variant: str, p50: float, top1: float | None, thr: float | None = None, **extra) -> list[dict]:
    """Two scenario rows (as a worker writes them) for one variant on cpu."""
    common = {"variant": variant, "recipe": variant, "device": "cpu", "status": "ok", "size_mb": 10.0, **extra}
    if top1 is not None:
        common["top1"] = top1
    lat = {**common, "scenario": "latency", "batch_size": 1, "p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2}
    thr_row = {**common, "scenario": "throughput", "batch_size": 16, "throughput_img_s": thr or 16e3 / (p50 * 8)}
    return [lat, thr_row]


def failed(variant: str, error: str = "RuntimeError: boom") -> dict:
    return {"variant": variant, "recipe": variant, "device": "cpu", "scenario": "*", "status": "failed", "error": error}


# The leaderboard's columns for a run of the default scenarios: a user's scripts read them by name.
LEADERBOARD_COLUMNS = [
    *["variant", "device", "status", "p50_ms", "p90_ms", "p99_ms", "cov", "throughput_img_s", "throughput_batch"],
    *["speedup_vs_fp32", "throughput_speedup_vs_fp32", "speedup_ci95_low", "speedup_ci95_high", "top1", "top5"],
    *["top1_drop", "agreement", "size_mb", "build_s", "first_call_ms", "peak_rss_mb", "within_budget", "note"],
]


def test_best_is_fastest_within_budget_not_first_passing():
    rows = (
        rows_for("fp32", 10.0, 95.0)
        + rows_for("slow-ok", 8.0, 94.8)  # passes first in file order, but is not the fastest
        + rows_for("fastest-over", 2.0, 90.0)  # fastest overall, 5 points over budget
        + rows_for("best", 4.0, 94.5)
        + [failed("broken")]
    )
    df = build_leaderboard(rows, max_drop=1.0)
    assert list(df.columns[: len(columns())]) == columns() == LEADERBOARD_COLUMNS
    assert df["variant"].tolist()[:4] == ["fastest-over", "best", "slow-ok", "fp32"]  # sorted by latency
    assert df["variant"].tolist()[-1] == "broken"  # failures stay visible, last
    assert df.set_index("variant").loc["fastest-over", "within_budget"] == False  # noqa: E712 - a pandas boolean
    assert "over budget" in df.set_index("variant").loc["fastest-over", "note"]
    best = best_within_budget(df, "cpu")
    assert best["variant"] == "best"
    line = answer_line(df, 1.0, "cpu")
    assert "best" in line and "2.50x fp32 speed" in line and "drop 0.50 points" in line


def test_ties_are_broken_by_p90_then_size_then_name():
    rows = rows_for("fp32", 10.0, 95.0) + rows_for("b", 5.0, 95.0) + rows_for("a", 5.0, 95.0)
    rows += rows_for("c", 5.0, 95.0, size_mb=1.0)
    for r in rows:  # make b's tail worse: p90 breaks the tie before size and name
        if r["variant"] == "b" and r["scenario"] == "latency":
            r["p90_ms"] = 9.0
    df = build_leaderboard(rows, 1.0)
    assert best_within_budget(df)["variant"] == "c"  # same p50 and p90 as a, smaller artifact
    df2 = build_leaderboard([r for r in rows if r["variant"] != "c"], 1.0)
    assert best_within_budget(df2)["variant"] == "a"  # a and b tie on p50 and size; b's p90 is worse


def test_all_over_budget_answers_fp32_itself():
    rows = rows_for("fp32", 10.0, 95.0) + rows_for("int8", 3.0, 80.0) + rows_for("pruned", 4.0, 70.0)
    df = build_leaderboard(rows, 1.0)
    assert df.loc[df["variant"] != "fp32", "within_budget"].eq(False).all()
    line = answer_line(df, 1.0, "cpu")
    assert line.startswith("fastest within 1-point top-1 budget on cpu: fp32")
    assert "no variant beats the fp32 reference" not in line  # two did, over budget: say so, fastest first
    assert line.endswith(
        "every faster variant is over the 1-point budget: int8 (3.33x, drop 15.00), pruned (2.50x, drop 25.00)"
    )
    slower = rows_for("fp32", 10.0, 95.0) + rows_for("int8", 12.0, 80.0)
    line = answer_line(build_leaderboard(slower, 1.0), 1.0, "cpu")
    assert "no variant beats the fp32 reference" in line and "over the" not in line


def test_missing_reference_means_the_budget_cannot_be_checked():
    rows = [failed("fp32")] + rows_for("int8", 3.0, 80.0) + rows_for("fp32-cl", 5.0, 95.0)
    df = build_leaderboard(rows, 1.0)
    assert best_within_budget(df) is None
    line = answer_line(df, 1.0, "cpu")
    assert "cannot check" in line and "fp32 reference" in line and "int8" in line


def test_all_failed():
    df = build_leaderboard([failed("fp32"), failed("int8", "timed out after 5s")], 1.0)
    assert best_within_budget(df) is None
    assert "no variant on cpu was measured successfully" in answer_line(df, 1.0, "cpu")
    assert df["note"].str.startswith("failed:").all()


def test_random_init_speed_only_answer_and_empty_accuracy(tmp_path):
    note = {"accuracy_note": "random init: speed only, accuracy not measured"}
    rows = rows_for("fp32", 10.0, None, **note) + rows_for("fp32-cl", 6.0, None, **note)
    df = build_leaderboard(rows, 1.0)
    assert df["top1"].isna().all() and df["top1_drop"].isna().all()
    assert df["within_budget"].isna().all()  # speed only: unknown
    assert df["note"].str.contains("accuracy not measured").all()  # the empty columns are marked
    line = answer_line(df, 1.0, "cpu")
    assert "fp32-cl" in line and "speed only" in line
    paths = write_leaderboard(df, tmp_path, line)
    csv = pd.read_csv(paths["leaderboard.csv"])
    assert csv["top1"].isna().all()
    assert line in paths["leaderboard.md"].read_text()


def test_slower_than_fp32_is_said_next_to_the_variant():
    rows = rows_for("fp32", 10.0, 95.0, thr=200.0) + rows_for("bf16", 20.0, 95.0, thr=100.0)
    df = build_leaderboard(rows, 1.0).set_index("variant")
    assert math.isclose(df.loc["bf16", "speedup_vs_fp32"], 0.5)
    assert "slower than fp32 at batch 1 (0.50x)" in df.loc["bf16", "note"]
    assert "lower throughput than fp32 (0.50x)" in df.loc["bf16", "note"]


def test_paced_figures_follow_the_paired_speedups(tmp_path):
    """Interleaved rows: fp32's figure scaled by the paired speedup, so the plot and the order agree with it."""
    from bench.report.leaderboard import paced
    from bench.report.plots import pareto_plot
    from bench.scenarios import get

    rows = rows_for("fp32", 10.0, 90.0, thr=100.0)
    paired_rows = rows_for("a", 4.0, 90.0, thr=300.0)  # absolute figures taken in a fast minute
    paired_rows[0]["paired"] = {"time_ratio": 0.5, "ci95": [0.45, 0.55]}
    paired_rows[1]["paired"] = {"time_ratio": 0.25, "ci95": [0.2, 0.3]}
    rows += paired_rows + rows_for("b", 4.5, 90.0, thr=500.0)  # timed alone: its own figures
    df = build_leaderboard(rows)
    by_name = df.set_index("variant")
    lat, thr = paced(df, get("latency")), paced(df, get("throughput"))
    lat.index = thr.index = df["variant"]
    assert math.isclose(lat["a"], 5.0) and math.isclose(thr["a"], 400.0)  # 10 ms / 2x, 100 img/s x 4
    assert math.isclose(lat["b"], 4.5) and math.isclose(thr["b"], 500.0)
    assert math.isclose(lat["fp32"], 10.0) and round(by_name.loc["a", "speedup_ci95_low"], 2) == 1.82
    assert round(by_name.loc["a", "speedup_ci95_high"], 2) == 2.22
    assert list(df["variant"]) == ["b", "a", "fp32"]  # by absolute p50, "a" (4.0 ms) would come first
    assert best_within_budget(df)["variant"] == "b"
    png = pareto_plot(df, tmp_path / "pareto.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_processes_that_disagree_are_said_next_to_the_variant():
    rows = rows_for("fp32", 10.0, 95.0) + rows_for("steady", 5.0, 95.0) + rows_for("wobbly", 5.0, 95.0)
    # (process ratios, p that the processes' rounds differ): 10% apart but within the rounds' noise, and 10% beyond it
    seen = {"steady": ([0.48, 0.53], 0.2), "wobbly": ([0.48, 0.53], 0.001)}
    for r in rows:
        if r["variant"] in seen and r["scenario"] == "latency":
            ratios, p = seen[r["variant"]]
            r["paired"] = {"time_ratio": 0.5, "ci95": [0.49, 0.51], "process_time_ratios": ratios, "process_p": p}
    notes = build_leaderboard(rows, 1.0).set_index("variant")["note"]
    assert "processes" not in notes["steady"]
    assert "its 2 processes read 2.08x, 1.89x at batch 1 (10% apart, p=0.001)" in notes["wobbly"]


def test_a_speedup_that_depends_on_the_order_within_rounds_is_flagged():
    rows = rows_for("fp32", 10.0, 95.0) + rows_for("fair", 1.0, 95.0) + rows_for("disturbed", 1.0, 95.0)
    # (log ratio of variant-second minus variant-first rounds, its p): small and large, both "significant"
    seen = {"fair": (0.05, 1e-4), "disturbed": (0.69, 1e-9)}
    for r in rows:
        if r["variant"] in seen and r["scenario"] == "latency":
            diff, p = seen[r["variant"]]
            r["paired"] = {"time_ratio": 0.1, "ci95": [0.09, 0.11], "order_log_diff": diff, "order_p": p}
    notes = build_leaderboard(rows, 1.0).set_index("variant")["note"]
    assert "went first" not in notes["fair"]  # 5%: below the 10% that counts as disturbance
    assert "its rounds at batch 1 read 1.99x apart by which side went first (p=1e-09)" in notes["disturbed"]


def test_pareto_labels_and_ticks_do_not_collide():
    """Crowded points on a log axis: plain tick labels apart from each other, numbered points apart, all inside."""
    from bench.report.plots import pareto_figure

    rows = []
    for i, (name, p50) in enumerate(
        [
            ("fp32", 10.0),
            ("fp32-cl", 9.5),
            ("ptq(x86)", 0.51),
            ("ort", 0.5),
            ("ptq(ort)", 0.49),
            ("bf16", 80.0),
            ("prune(0.5)", 4.0),
        ]
    ):
        rows += rows_for(name, p50, 95.0 - 0.01 * i, 100.0 / p50)
    df = build_leaderboard(rows, 1.0)
    fig = pareto_figure(df, 1.0, "crowded")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    ticks = [t for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
    assert ticks and all("times" not in t.get_text() and "^" not in t.get_text() for t in ticks)
    boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.x0)
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:], strict=False))  # no tick label runs into the next
    numbers = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(numbers) == 7
    assert not any(a.overlaps(b) for i, a in enumerate(numbers) for b in numbers[i + 1 :])
    frame = fig.bbox
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in numbers)
    assert "milliseconds" in ax.get_xlabel()
