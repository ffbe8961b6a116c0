"""``python -m bench.tools.repeatability RUN [RUN ...]``: how well repeated sweeps of the same variants agree.

Give it two or more run folders (or their ``results.jsonl``) of the same checkpoint and recipes. For every
variant measured ok in all of them it prints the coefficient of variation across runs of the batch-1 p50,
the throughput, and ``speedup_vs_fp32`` (paired when the runs were interleaved), then the median CoV of each
column (fp32 left out of the speedup columns, where it is 1 by definition): the figure the project aims to keep
within 3%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.report.leaderboard import REFERENCE, build_leaderboard
from bench.results_io import RESULTS_FILE, read_rows
from data.errors import ArgumentParser, InputError, run_cli

METRICS = ("p50_ms", "throughput_img_s", "speedup_vs_fp32", "throughput_speedup_vs_fp32")


def _rows(path: Path) -> list[dict]:
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"no {RESULTS_FILE} at {path}")
    rows = read_rows(file)
    if not rows:
        raise InputError(f"{file} holds no rows")
    return rows


def cov(values: Sequence[float]) -> float:
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if x.size < 2 or x.mean() == 0:
        return math.nan
    return float(x.std(ddof=1) / abs(x.mean()))


def repeatability(runs: Sequence[Path]) -> tuple[list[list], dict[str, float]]:
    """Per-variant CoVs across runs, and the median of each column."""
    boards = [build_leaderboard(_rows(Path(r))).set_index(["variant", "device"]) for r in runs]
    ok = [set(b.index[b["status"] == "ok"]) for b in boards]
    common = sorted(set.intersection(*ok))
    if not common:
        raise InputError("no variant was measured ok in every run")
    table = []
    for key in common:
        covs = [cov([float(b.loc[key, m]) for b in boards]) for m in METRICS]
        table.append([*key, *covs])
    medians = {}
    for i, m in enumerate(METRICS):
        # fp32's speedup is 1 by definition in every run: counting its 0% would flatter the median.
        values = [row[2 + i] for row in table if not ("speedup" in m and row[0] == REFERENCE)]
        medians[m] = float(np.nanmedian(values)) if values else math.nan
    return table, medians


def main(argv: Sequence[str] | None = None) -> int:
    from tabulate import tabulate

    p = ArgumentParser(prog="python -m bench.tools.repeatability", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders (results/runs/<id>) or results.jsonl files, >= 2")
    args = p.parse_args(argv)
    if len(args.runs) < 2:
        raise InputError("give at least two runs to compare")
    table, medians = repeatability([Path(r) for r in args.runs])

    def pct(v: float) -> str:
        return "" if math.isnan(v) else f"{v * 100:.1f}%"

    shown = [[v, d, *[pct(c) for c in covs]] for v, d, *covs in table]
    print(f"{len(args.runs)} runs; CoV across runs per variant")
    print(tabulate(shown, headers=["variant", "device", *METRICS], tablefmt="github"))
    print("median CoV: " + ", ".join(f"{m} {pct(v)}" for m, v in medians.items()))
    return 0


if __name__ == "__main__":
    run_cli(main)
