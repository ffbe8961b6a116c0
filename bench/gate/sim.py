"""``python -m bench.gate.sim``: how often the gate cries wolf, and how often it sleeps through a real slowdown.

It resamples recorded per-call samples (``results.jsonl`` rows or pytest-benchmark JSON of this machine)
and runs the gate's own decision rule (:func:`bench.gate.stats.compare_timing`) many times:

- **A/A**: both sides drawn from recordings of the same code; any REGRESSION verdict is a false alarm.
- **slowdown**: the candidate's draw is multiplied by ``1 + --slowdown`` (default 10% more time per call);
  a REGRESSION verdict is a detection.

Two ways to pair the sides, reported separately:

- ``within-run``: both sides are bootstrap draws of n from one recorded run: the noise between calls only.
- ``across-runs`` (needs >= 2 recorded runs of a benchmark): each side pools ``--rounds`` different runs
  (distinct processes) and draws n per run: adds the process-to-process noise that a gate against a stored
  baseline (rounds=1) or in A/B mode (rounds=N) faces. This is the honest figure.

- ``interleaved`` (needs a recorded interleaved session of >= 2 x ``--processes`` processes of the same
  code, e.g. from ``--record``): the A/B mode's own design. Each trial splits the session's processes into
  a base side and a head side of ``--processes`` each and runs the paired rule
  (:func:`bench.gate.stats.compare_paired`) on their rounds; the process effect (one process's memory
  layout making it a few percent faster for its whole life) is in the data, not modelled.

``--n-grid 10,20,50`` repeats the slowdown trial for other sample counts, to size the quick suite.
``--record N`` first records N interleaved sessions of ``--record-processes`` fp32 processes on this
machine (the embedded default checkpoint unless ``--ckpt``), then simulates on them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.gate.inputs import GateInput, load_file, merge
from bench.gate.simulate import SimResult, interleaved_sessions, simulate, simulate_interleaved
from bench.gate.stats import DEFAULT_ALPHA, DEFAULT_PAIRED_ALPHA, DEFAULT_RUN_ALPHA, min_attainable_p, min_samples_for
from bench.results_io import read_rows
from bench.scenarios import all_scenarios
from data.errors import ArgumentParser, InputError, run_cli


def record_sessions(count: int, processes: int, ckpt: str | None, recipe: str = "fp32") -> Path:
    """Run ``count`` interleaved groups of ``processes`` copies of one variant; returns their results.jsonl."""
    from bench.options import quick_run_config
    from bench.results_io import RESULTS_FILE, append_rows
    from bench.run.schedule import PairingPlan
    from bench.run.sides import measure_processes
    from data.paths import results_dir
    from models.default import ensure_default_checkpoint
    from models.spec import LoadSpec

    if count < 1 or processes < 2:
        raise InputError("--record needs >= 1 session and --record-processes >= 2")
    ckpt = ckpt or str(ensure_default_checkpoint())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = results_dir() / "runs" / f"gate-sim-{stamp}"
    plan = PairingPlan()
    run = quick_run_config(LoadSpec(path=str(Path(ckpt).absolute())), recipe, 1800.0, f"gate-sim-{stamp}")
    run = run.replace(accuracy=False)
    for n in range(1, count + 1):
        print(f"recording session {n}/{count}: {processes} x {recipe}", file=sys.stderr)
        named = [(f"s{n}-p{i + 1}", run.job(recipe, str(run_dir)), None) for i in range(processes)]
        rows_by_name = measure_processes(named, plan, run_dir / "logs", run.timeout_s)
        for i, rows in enumerate(rows_by_name.values()):
            for row in rows:
                row["pairing"] = {"session": f"{stamp}-s{n}", "process": i + 1, "rounds": plan.rounds}
            append_rows(run_dir / RESULTS_FILE, rows)
    return run_dir / RESULTS_FILE


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m bench.gate.sim", description="Estimate the gate's false-alarm rate and power.")
    p.add_argument(
        "--samples",
        action="append",
        help="results.jsonl or pytest-benchmark JSON (repeat; default: "
        "every results.jsonl under $OPTBENCH_RESULTS/runs/)",
    )
    p.add_argument("--trials", type=int, default=1000, help="trials per benchmark and case (default 1000)")
    p.add_argument("--n", type=int, help="samples per run per side (default: what each run recorded)")
    p.add_argument("--n-grid", help="comma-separated sample counts for a power table, e.g. 10,20,50,100")
    p.add_argument("--rounds", type=int, default=1, help="runs pooled per side in across-runs mode (A/B rounds)")
    p.add_argument("--threshold", default="5%", help="gate threshold (default 5%%)")
    p.add_argument("--alpha", default=str(DEFAULT_ALPHA), help="gate significance level (default 0.001)")
    p.add_argument("--slowdown", default="10%", help="injected slowdown (default 10%%)")
    p.add_argument(
        "--scenarios", help="comma-separated scenarios to simulate (default: each scenario keeping per-call samples)"
    )
    p.add_argument("--run-alpha", default=str(DEFAULT_RUN_ALPHA), help="run-level Welch t level (default 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", type=int, default=3, help="processes per side in interleaved mode (default 3)")
    p.add_argument(
        "--paired-alpha", default=str(DEFAULT_PAIRED_ALPHA), help="signed-rank level in interleaved mode (default 0.01)"
    )
    p.add_argument("--record", type=int, metavar="N", help="first record N interleaved sessions on this machine")
    p.add_argument("--record-processes", type=int, default=6, help="processes per recorded session (default 6)")
    p.add_argument("--ckpt", help="checkpoint for --record (default: the embedded default)")
    return p


def _default_samples() -> list[Path]:
    from data.paths import results_dir

    files = sorted((results_dir() / "runs").glob("*/results.jsonl"))
    if not files:
        raise InputError(
            f"no results.jsonl under {results_dir() / 'runs'}; run python -m bench --quick first or pass --samples"
        )
    return files


def _one_checkpoint(files: list[Path], chosen: bool) -> dict[Path, GateInput]:
    """The files whose runs measured one checkpoint the same way: pooling a resnet10t run with a resnet50 run (or a
    run timed inside pytest with one timed in processes of their own) as two "runs" of one benchmark would simulate
    noise that is really two experiments. Files the user named must agree; of the results folder's runs the largest
    such group is kept and the rest named. Returns the kept files, each read once."""
    loaded = {f: load_file(f) for f in files}
    groups: dict[tuple, list[Path]] = {}
    for f, inp in loaded.items():
        series = list(inp.series.values())
        shas = tuple(sorted({sha for s in series for sha in s.checkpoints}))
        measured = tuple(sorted({(k, str(v)) for s in series for k, v in s.conditions.items()}))
        groups.setdefault((shas, measured), []).append(f)
    if len(groups) == 1:
        return loaded

    def named(key: tuple) -> str:
        shas, measured = key
        how = ", ".join(f"{k}={v}" for k, v in measured) or "no recorded conditions"
        return f"checkpoint {'+'.join(x[:12] for x in shas) or '(none recorded)'} ({how})"

    listed = "; ".join(f"{len(fs)} of {named(key)}" for key, fs in groups.items())
    if chosen:
        raise InputError(f"the samples are runs of different checkpoints or conditions ({listed}); pass runs of one")
    key, kept = max(groups.items(), key=lambda item: len(item[1]))
    print(f"note: simulating the {len(kept)} run(s) of {named(key)}; the results folder holds {listed}: pass "
          "--samples to choose", file=sys.stderr)  # fmt: skip
    return {f: loaded[f] for f in kept}


def _grid(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        grid = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--n-grid {text!r} is not a comma-separated list of integers") from None
    if any(g < 2 for g in grid):
        raise InputError("--n-grid values must be >= 2")
    return grid


def _simulate_all(args, loaded: dict[Path, GateInput], rules: dict[str, float]) -> list[SimResult]:
    """Every interleaved group and every recorded benchmark through the gate's rule, in every mode."""
    files = list(loaded)
    data = merge(list(loaded.values()))
    if args.scenarios:
        scenarios = {x.strip() for x in args.scenarios.split(",") if x.strip()}
    else:
        scenarios = {s.name for s in all_scenarios() if s.samples_field}
    series = [s for s in data.series.values() if s.status == "ok" and s.samples_ms and s.scenario in scenarios]
    if not series:
        raise InputError(f"no timing samples for scenarios {sorted(scenarios)} in {', '.join(map(str, files))}")
    rng = np.random.default_rng(args.seed)
    results: list[SimResult] = []
    sessions = interleaved_sessions([row for f in files if f.suffix == ".jsonl" for row in read_rows(f)], scenarios)
    for key in sorted({(x.template.bench_id, x.template.device) for x in sessions}):
        group = [x for x in sessions if (x.template.bench_id, x.template.device) == key]
        r = simulate_interleaved(
            group, args.processes, args.trials, rules["threshold"], rules["paired_alpha"], rules["slowdown"], rng
        )
        if r is not None:
            results.append(r)
    for s in series:
        n_default = args.n or int(np.median([len(r) for r in s.runs()]))
        for mode in ("within-run", "across-runs"):
            for n in [n_default, *[g for g in _grid(args.n_grid) if g != n_default]]:
                r = simulate(
                    s,
                    n,
                    args.trials,
                    rules["threshold"],
                    rules["alpha"],
                    rules["slowdown"],
                    args.rounds,
                    rng,
                    mode,
                    rules["run_alpha"],
                )
                if r is not None:
                    r.default_n = n == n_default
                    results.append(r)
    return results


def _print_results(results: list[SimResult], files: list[Path], rules: dict[str, float], args) -> None:
    from tabulate import tabulate

    threshold, alpha, slowdown = rules["threshold"], rules["alpha"], rules["slowdown"]
    table = [
        [
            r.bench_id,
            r.device,
            r.mode,
            r.n,
            r.rounds if r.mode != "within-run" else "-",
            r.runs_available,
            r.trials,
            f"{r.aa_rate * 100:.1f}%",
            f"{r.slow_rate * 100:.1f}%",
        ]
        for r in results
    ]
    print(f"samples: {', '.join(map(str, files))}")
    print(
        "interleaved rows: n/run = rounds per process, rounds = processes per side, runs = processes recorded; "
        "rule: paired ratio past the threshold AND one-sided Wilcoxon signed-rank on round log ratios "
        f"p < {rules['paired_alpha']:g}"
    )
    print(
        f"rule: ratio past {threshold * 100:g}% AND one-sided Mann-Whitney U p < {alpha:g} (AND run-level Welch "
        f"p < {rules['run_alpha']:g} when rounds >= 2); injected slowdown {slowdown * 100:g}% more time per call; "
        f"seed {args.seed}"
    )
    headers = [
        "benchmark",
        "device",
        "pairing",
        "n/run",
        "rounds",
        "runs",
        "trials",
        "A/A flagged",
        f"+{slowdown * 100:g}% flagged",
    ]
    print(tabulate(table, headers=headers, tablefmt="github"))
    _print_verdicts(results, rules, args)


def _print_verdicts(results: list[SimResult], rules: dict[str, float], args) -> None:
    """Whether each pairing mode meets the targets (<= 1% false alarms, >= 95% detection)."""
    alpha, slowdown = rules["alpha"], rules["slowdown"]
    blind = [r for r in results if r.default_n and min_attainable_p(r.n * r.rounds, r.n * r.rounds) >= alpha]
    for r in {(r.bench_id, r.n): r for r in blind}.values():
        print(
            f"blind: {r.bench_id} with {r.n} samples per side cannot reach p < {alpha:g} at all; the quick suite "
            f"must collect >= {min_samples_for(alpha)} (more for power)"
        )
    for mode in ("within-run", "across-runs", "interleaved"):
        rows = [r for r in results if r.default_n and r.mode == mode and r not in blind]
        if rows:
            worst_aa, worst_slow = max(r.aa_rate for r in rows), min(r.slow_rate for r in rows)
            ok = worst_aa <= 0.01 and worst_slow >= 0.95
            print(
                f"{mode}: worst A/A false-alarm rate {worst_aa * 100:.1f}% (target <= 1%), worst detection of "
                f"+{slowdown * 100:g}% {worst_slow * 100:.1f}% (target >= 95%): {'MET' if ok else 'NOT MET'}"
            )
    if not any(r.mode == "across-runs" for r in results):
        print(
            f"note: no benchmark has >= {2 * args.rounds} recorded runs, so process-to-process noise was not "
            "simulated; record more runs (python -m bench --quick several times) and pass them all",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    from bench.gate.config import parse_alpha, parse_threshold

    args = build_parser().parse_args(argv)
    rules = {
        "threshold": parse_threshold(args.threshold, "--threshold"),
        "alpha": parse_alpha(args.alpha, "--alpha"),
        "run_alpha": parse_alpha(args.run_alpha, "--run-alpha"),
        "paired_alpha": parse_alpha(args.paired_alpha, "--paired-alpha"),
        "slowdown": parse_threshold(args.slowdown, "--slowdown"),
    }
    if args.trials < 1 or args.rounds < 1 or (args.n is not None and args.n < 2):
        raise InputError("--trials and --rounds must be >= 1 and --n >= 2")
    _grid(args.n_grid)
    if args.processes < 1:
        raise InputError("--processes must be >= 1")
    files = [Path(f) for f in args.samples] if args.samples else []
    if args.record:
        files.append(record_sessions(args.record, args.record_processes, args.ckpt))
    loaded = _one_checkpoint(files, chosen=True) if files else _one_checkpoint(_default_samples(), chosen=False)
    _print_results(_simulate_all(args, loaded, rules), list(loaded), rules, args)
    return 0


if __name__ == "__main__":
    run_cli(main)
