"""The gate's false-alarm rate and power, by resampling recorded samples through its own decision rule.

See ``python -m bench.gate.sim`` (:mod:`bench.gate.sim`) for what each mode means; this module holds the
simulation, which the command runs and prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.gate.series import Series
from bench.gate.stats import DEFAULT_RUN_ALPHA, REGRESSION, compare_timing


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
    """Group rows written by bench.run.schedule (``pairing.session`` + ``slice_lengths``) by session and benchmark."""
    from bench.measure.paired_stats import split

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
