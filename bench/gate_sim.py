"""``python -m bench.gate_sim``: how often the gate cries wolf, and how often it sleeps through a real slowdown.

It resamples recorded per-call samples (``results.jsonl`` rows or pytest-benchmark JSON of this machine)
and runs the gate's own decision rule (:func:`bench.gate_stats.compare_timing`) many times:

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
  (:func:`bench.gate_stats.compare_paired`) on their rounds; the process effect (one process's memory
  layout making it a few percent faster for its whole life) is in the data, not modelled.

``--n-grid 10,20,50`` repeats the slowdown trial for other sample counts, to size the quick suite.
``--record N`` first records N interleaved sessions of ``--record-processes`` fp32 processes on this
machine (the embedded default checkpoint unless ``--ckpt``), then simulates on them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.gate_inputs import Series, load_file, merge
from bench.gate_stats import (
    DEFAULT_ALPHA,
    DEFAULT_PAIRED_ALPHA,
    DEFAULT_RUN_ALPHA,
    REGRESSION,
    compare_timing,
    min_attainable_p,
    min_samples_for,
)
from bench.results_io import read_rows
from models.errors import ArgumentParser, InputError, run_cli


@dataclass
class SimResult:
    bench_id: str
    device: str
    mode: str  # within-run | across-runs
    n: int  # samples per run drawn for each side
    rounds: int
    runs_available: int
    trials: int
    aa_rate: float
    slow_rate: float
    default_n: bool = True  # False for the extra rows of --n-grid


def _series(runs: Sequence[np.ndarray], template: Series) -> Series:
    samples = np.concatenate(runs)
    return Series(
        template.variant,
        template.scenario,
        template.device,
        template.metric,
        samples_ms=samples.tolist(),
        batch_size=template.batch_size,
        sessions=len(runs),
        chunks=[len(r) for r in runs],
    )


def _flagged(base: list[np.ndarray], cand: list[np.ndarray], s: Series, rule: tuple[float, float, float]) -> bool:
    threshold, alpha, run_alpha = rule
    return compare_timing(_series(base, s), _series(cand, s), threshold, alpha, run_alpha).verdict == REGRESSION


def simulate(
    s: Series,
    n: int,
    trials: int,
    threshold: float,
    alpha: float,
    slowdown: float,
    rounds: int,
    rng: np.random.Generator,
    mode: str,
    run_alpha: float = DEFAULT_RUN_ALPHA,
) -> SimResult | None:
    """Run ``trials`` A/A and ``trials`` slowdown comparisons on resampled runs of one benchmark."""
    runs = [np.asarray(r, dtype=np.float64) for r in s.runs() if len(r) >= 2]
    if mode == "across-runs" and len(runs) < 2 * rounds:
        return None
    if not runs:
        return None
    aa = slow = 0
    for _ in range(trials):
        if mode == "within-run":
            run = runs[rng.integers(len(runs))]
            base = [rng.choice(run, n)]
            cand = [rng.choice(run, n)]
            cand_slow = [rng.choice(run, n)]
        else:
            pick = rng.permutation(len(runs))[: 2 * rounds]
            base = [rng.choice(runs[i], n) for i in pick[:rounds]]
            cand = [rng.choice(runs[i], n) for i in pick[rounds:]]
            cand_slow = cand
        rule = (threshold, alpha, run_alpha)
        aa += _flagged(base, cand, s, rule)
        slow += _flagged(base, [c * (1 + slowdown) for c in cand_slow], s, rule)
    return SimResult(s.bench_id, s.device, mode, n, rounds, len(runs), trials, aa / trials, slow / trials)


@dataclass
class Session:
    """One interleaved session of one benchmark: per process, its slices (ms), in round order."""

    template: Series
    processes: list[list[np.ndarray]]


def interleaved_sessions(rows: list[dict], scenarios: set[str]) -> list[Session]:
    """Group rows written by bench.interleave (``pairing.session`` + ``slice_lengths``) by session and benchmark."""
    from bench.paired import split

    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        pairing = row.get("pairing") if isinstance(row.get("pairing"), dict) else None
        if not pairing or row.get("status", "ok") != "ok" or row.get("scenario") not in scenarios:
            continue
        if not row.get("slice_lengths") or not row.get("samples_ms"):
            continue
        key = (pairing.get("session"), row.get("variant"), row.get("scenario"), row.get("device"))
        groups.setdefault(key, []).append(row)
    out = []
    for (_, variant, scenario, device), members in groups.items():
        procs = [[np.asarray(x) for x in split(r["samples_ms"], r["slice_lengths"])] for r in members]
        rounds = min(len(p) for p in procs)
        template = Series(
            str(variant), str(scenario), str(device), str(scenario), batch_size=int(members[0].get("batch_size") or 1)
        )
        out.append(Session(template, [p[:rounds] for p in procs]))
    return out


def _side(procs: list[list[np.ndarray]], template: Series, factor: float, session: str) -> Series:
    samples, chunks, lengths = [], [], []
    for proc in procs:
        chunks.append(sum(len(x) for x in proc))
        lengths.append([len(x) for x in proc])
        samples.extend(float(v) * factor for x in proc for v in x)
    return Series(
        template.variant,
        template.scenario,
        template.device,
        template.metric,
        samples_ms=samples,
        batch_size=template.batch_size,
        sessions=len(procs),
        chunks=chunks,
        pairing=session,
        slice_lengths=lengths,
    )


def simulate_interleaved(
    sessions: list[Session], k: int, trials: int, threshold: float, alpha: float, slowdown: float, rng
) -> SimResult | None:
    """A/A and slowdown trials from random k-vs-k splits of recorded interleaved sessions of one benchmark."""
    usable = [s for s in sessions if len(s.processes) >= 2 * k]
    if not usable:
        return None
    aa = slow = 0
    for _ in range(trials):
        sess = usable[rng.integers(len(usable))]
        pick = rng.permutation(len(sess.processes))[: 2 * k]
        base = [sess.processes[i] for i in pick[:k]]
        cand = [sess.processes[i] for i in pick[k:]]
        t = sess.template
        b = _side(base, t, 1.0, "sim")
        aa += compare_timing(b, _side(cand, t, 1.0, "sim"), threshold, paired_alpha=alpha).verdict == REGRESSION
        slow += (
            compare_timing(b, _side(cand, t, 1 + slowdown, "sim"), threshold, paired_alpha=alpha).verdict == REGRESSION
        )
    rounds = min(len(p) for s in usable for p in s.processes)
    t = usable[0].template
    runs = sum(len(s.processes) for s in usable)
    return SimResult(t.bench_id, t.device, "interleaved", rounds, k, runs, trials, aa / trials, slow / trials)


def record_sessions(count: int, processes: int, ckpt: str | None, recipe: str = "fp32") -> Path:
    """Run ``count`` interleaved sessions of ``processes`` copies of one variant; returns their results.jsonl."""
    from bench.fingerprint import default_threads
    from bench.interleave import MeasurementServer, PairingPlan, interleave
    from bench.results_io import RESULTS_FILE, append_rows
    from bench.timing import default_scenarios
    from bench.worker import Job
    from models.default import ensure_default_checkpoint, results_dir

    if count < 1 or processes < 2:
        raise InputError("--record needs >= 1 session and --record-processes >= 2")
    ckpt = ckpt or str(ensure_default_checkpoint())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = results_dir() / "runs" / f"gate-sim-{stamp}"
    scenarios = default_scenarios(quick=False)
    plan = PairingPlan()
    for n in range(1, count + 1):
        print(f"recording session {n}/{count}: {processes} x {recipe}", file=sys.stderr)
        servers = []
        try:
            for i in range(processes):
                job = Job(
                    recipe=recipe,
                    device="cpu",
                    scenarios=scenarios,
                    run_dir=str(run_dir),
                    run_id=f"s{n}-p{i + 1}",
                    ckpt=ckpt,
                    data_spec=None,
                    threads=default_threads(),
                    quick=True,
                    accuracy=False,
                )
                servers.append(MeasurementServer(f"p{i + 1}", job, run_dir / "logs" / f"s{n}-p{i + 1}.log"))
            interleave(servers, scenarios, plan)
            for i, server in enumerate(servers):
                rows = server.finish()
                for row in rows:
                    row["pairing"] = {"session": f"{stamp}-s{n}", "process": i + 1, "rounds": plan.rounds}
                append_rows(run_dir / RESULTS_FILE, rows)
        finally:
            for server in servers:
                server.close()
    return run_dir / RESULTS_FILE


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m bench.gate_sim", description="Estimate the gate's false-alarm rate and power.")
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
        "--scenarios", default="latency,throughput", help="scenarios to simulate (default latency,throughput)"
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
    from models.default import results_dir

    files = sorted((results_dir() / "runs").glob("*/results.jsonl"))
    if not files:
        raise InputError(
            f"no results.jsonl under {results_dir() / 'runs'}; run python -m bench --quick first or pass --samples"
        )
    return files


def main(argv: Sequence[str] | None = None) -> int:
    from tabulate import tabulate

    from bench.gate_config import parse_alpha, parse_threshold

    args = build_parser().parse_args(argv)
    threshold = parse_threshold(args.threshold, "--threshold")
    alpha = parse_alpha(args.alpha, "--alpha")
    run_alpha = parse_alpha(args.run_alpha, "--run-alpha")
    paired_alpha = parse_alpha(args.paired_alpha, "--paired-alpha")
    slowdown = parse_threshold(args.slowdown, "--slowdown")
    if args.trials < 1 or args.rounds < 1 or (args.n is not None and args.n < 2):
        raise InputError("--trials and --rounds must be >= 1 and --n >= 2")
    grid = []
    if args.n_grid:
        try:
            grid = [int(x) for x in args.n_grid.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"--n-grid {args.n_grid!r} is not a comma-separated list of integers") from None
        if any(g < 2 for g in grid):
            raise InputError("--n-grid values must be >= 2")
    if args.processes < 1:
        raise InputError("--processes must be >= 1")
    files = [Path(f) for f in args.samples] if args.samples else []
    if args.record:
        files.append(record_sessions(args.record, args.record_processes, args.ckpt))
    files = files or _default_samples()
    data = merge([load_file(f) for f in files])
    scenarios = {x.strip() for x in args.scenarios.split(",")}
    series = [s for s in data.series.values() if s.status == "ok" and s.samples_ms and s.scenario in scenarios]
    if not series:
        raise InputError(f"no timing samples for scenarios {sorted(scenarios)} in {', '.join(map(str, files))}")
    rng = np.random.default_rng(args.seed)
    results: list[SimResult] = []
    all_rows = [row for f in files if f.suffix == ".jsonl" for row in read_rows(f)]
    sessions = interleaved_sessions(all_rows, scenarios)
    for key in sorted({(x.template.bench_id, x.template.device) for x in sessions}):
        group = [x for x in sessions if (x.template.bench_id, x.template.device) == key]
        r = simulate_interleaved(group, args.processes, args.trials, threshold, paired_alpha, slowdown, rng)
        if r is not None:
            results.append(r)
    for s in series:
        n_default = args.n or int(np.median([len(r) for r in s.runs()]))
        for mode in ("within-run", "across-runs"):
            for n in [n_default, *[g for g in grid if g != n_default]]:
                r = simulate(s, n, args.trials, threshold, alpha, slowdown, args.rounds, rng, mode, run_alpha)
                if r is not None:
                    r.default_n = n == n_default
                    results.append(r)
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
        f"p < {paired_alpha:g}"
    )
    print(
        f"rule: ratio past {threshold * 100:g}% AND one-sided Mann-Whitney U p < {alpha:g} (AND run-level Welch "
        f"p < {run_alpha:g} when rounds >= 2); "
        f"injected slowdown {slowdown * 100:g}% more time per call; seed {args.seed}"
    )
    print(
        tabulate(
            table,
            headers=[
                "benchmark",
                "device",
                "pairing",
                "n/run",
                "rounds",
                "runs",
                "trials",
                "A/A flagged",
                f"+{slowdown * 100:g}% flagged",
            ],
            tablefmt="github",
        )
    )
    blind = [r for r in results if r.default_n and min_attainable_p(r.n * r.rounds, r.n * r.rounds) >= alpha]
    for r in {(r.bench_id, r.n): r for r in blind}.values():
        print(
            f"blind: {r.bench_id} with {r.n} samples per side cannot reach p < {alpha:g} at all; the quick suite "
            f"must collect >= {min_samples_for(alpha)} (more for power)"
        )
    for mode in ("within-run", "across-runs", "interleaved"):
        rows = [r for r in results if r.default_n and r.mode == mode and r not in blind]
        if not rows:
            continue
        worst_aa = max(r.aa_rate for r in rows)
        worst_slow = min(r.slow_rate for r in rows)
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
    return 0


if __name__ == "__main__":
    run_cli(main)
