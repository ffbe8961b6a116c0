"""``python -m bench --search``: after the sweep, look for the best variant, not the first one.

The default recipes are single steps and a few fixed chains. The fastest deployable variant is often a chain
nobody listed: a pruning ratio in front of the fastest INT8 or BF16 backend of *this* machine. So the search starts
from the sweep's leaderboard, takes the two or three fastest INT8/BF16 variants of the first pass, and measures
chains around them: pruning ratios (fine-tuned on the train split when there is one) in front of each, and the
registered accuracy fallbacks of any variant that missed the budget. Each candidate is an ordinary recipe, measured
by the same sweep loop and written as an ordinary row. It stops when a round leaves the Pareto front (batch-1
speedup against top-1) where it was, when nothing is left to try, or at ``--search-minutes``. What it tried, why,
and what it gave is written to ``search.md`` and ``search.jsonl`` in the run directory.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from bench.config import RunConfig
from bench.results_io import RESULTS_FILE, read_rows

PRUNE_RATIOS = (0.3, 0.5, 0.7)
BACKENDS_KEPT = 3  # the fastest INT8/BF16 variants of the first pass that chains are built around
PER_ROUND = 2  # candidates measured before the front is looked at again


def _speedups(rows: list[dict[str, Any]], device: str) -> dict[str, tuple[float, float, float | None]]:
    """recipe -> (batch-1 speedup, top-1 drop, top-1) for the measured variants, from the leaderboard."""
    from bench.report.leaderboard import build_leaderboard, num

    df = build_leaderboard([r for r in rows if r.get("device") == device])
    out = {}
    for rec in df[df["status"] == "ok"].to_dict("records"):
        speed, drop = num(rec.get("speedup_vs_fp32")), num(rec.get("top1_drop"))
        if not math.isnan(speed):
            out[str(rec["variant"])] = (speed, drop, None if math.isnan(num(rec.get("top1"))) else num(rec["top1"]))
    return out


def front(measured: dict[str, tuple[float, float, float | None]]) -> list[str]:
    """Variants no other beats on both batch-1 speedup and top-1 drop (speed alone when top-1 is unknown)."""

    def drop_of(value: float) -> float:
        return 0.0 if math.isnan(value) else value

    names = []
    for name, (speed, drop, _) in measured.items():
        drop = drop_of(drop)
        beaten = any(
            s >= speed and drop_of(d) <= drop and (s > speed or drop_of(d) < drop)
            for other, (s, d, _) in measured.items()
            if other != name
        )
        if not beaten:
            names.append(name)
    return sorted(names)


def _fast_backends(measured: dict[str, tuple[float, float, float | None]], max_drop: float) -> list[str]:
    """The fastest single-step recipes within the budget whose step is a search candidate (INT8, BF16): what chains
    are built on."""
    from data.errors import InputError
    from optim.recipe import parse

    pool = []
    for name, (speed, drop, _) in measured.items():
        try:
            recipe = parse(name)
        except InputError:
            continue
        if len(recipe.steps) == 1 and recipe.search_candidate() and (math.isnan(drop) or drop <= max_drop):
            pool.append((speed, name))
    return [name for _, name in sorted(pool, reverse=True)[:BACKENDS_KEPT]]


def propose(
    measured: dict[str, tuple[float, float, float | None]], tried: set[str], max_drop: float
) -> list[tuple[str, str]]:
    """(recipe, why) candidates, most promising first, none measured or tried before."""
    from data.errors import InputError
    from optim.recipe import parse

    out: list[tuple[str, str]] = []
    for backend in _fast_backends(measured, max_drop):
        for ratio in PRUNE_RATIOS:
            out.append(
                (
                    f"prune({ratio:g})+{backend}",
                    f"pruning ({ratio:g}) in front of {backend}, "
                    f"one of the fastest INT8/BF16 variants here ({measured[backend][0]:.2f}x)",
                )
            )
    for name, (_, drop, _) in sorted(measured.items()):
        if not math.isnan(drop) and drop > max_drop:
            try:
                recipe = parse(name)
            except InputError:
                continue
            for fallback, why in recipe.fallbacks()[:2]:
                out.append((fallback, f"{name} missed the budget ({drop:.2f} points): {why}"))
    seen, unique = set(), []
    for recipe, why in out:
        try:
            text = str(parse(recipe))
        except InputError:
            continue  # a chain this backend cannot form (parse names why)
        if text not in measured and text not in tried and text not in seen:
            seen.add(text)
            unique.append((text, why))
    return unique


def _job_seconds(run_dir: Path) -> float:
    """How long one variant took so far in this run (the search fits its rounds into the time left)."""
    rows = [r for r in read_rows(run_dir / RESULTS_FILE) if isinstance(r.get("job_seconds"), int | float)]
    return max(1.0, sum(r["job_seconds"] for r in rows) / len(rows)) if rows else 60.0


def run_search(cfg: RunConfig, run_dir: Path, executor: Any, minutes: float, progress: bool = True) -> RunConfig:
    """Rounds of candidates until the front stops moving, nothing is left, or the time is up; returns the run
    configuration with the recipes the search added (written back to ``run_config.json`` for ``--resume``)."""
    from bench.run.sweep import run_sweep

    deadline = time.monotonic() + minutes * 60
    log_path, notes = run_dir / "search.jsonl", ["# Search", ""]
    tried: set[str] = set()
    measured = _speedups(read_rows(run_dir / RESULTS_FILE), cfg.device)
    current = front(measured)
    notes.append(f"Started from the sweep's front: {', '.join(current)}.")
    reason = "the time budget ran out"
    for round_no in range(1, 100):
        if time.monotonic() > deadline:
            break
        left = deadline - time.monotonic()
        candidates = propose(measured, tried, cfg.max_drop)[: max(1, min(PER_ROUND, int(left / _job_seconds(run_dir))))]
        if not candidates:
            reason = "nothing is left to try around the front runners"
            break
        for recipe, why in candidates:
            tried.add(recipe)
            print(f"search round {round_no}: {recipe} ({why})", file=sys.stderr)
        cfg = cfg.replace(recipes=(*cfg.recipes, *[r for r, _ in candidates]))
        (run_dir / "run_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        rows = run_sweep(cfg, run_dir, executor, progress=progress)
        measured = _speedups(rows, cfg.device)
        new_front = front(measured)
        for recipe, why in candidates:
            got = measured.get(recipe)
            result = f"{got[0]:.2f}x, top-1 drop {got[1]:.2f}" if got else "not measured (see the leaderboard)"
            entry = {"round": round_no, "recipe": recipe, "why": why, "result": result, "front": new_front}
            with open(log_path, "a") as fh:
                fh.write(json.dumps(entry) + "\n")
            notes.append(f"- round {round_no}: `{recipe}` ({why}): {result}")
        if new_front == current:
            reason = f"round {round_no} left the front where it was"
            break
        current = new_front
    notes += ["", f"Stopped: {reason}. Front: {', '.join(current)}."]
    (run_dir / "search.md").write_text("\n".join(notes) + "\n")
    print(f"search stopped: {reason}", file=sys.stderr)
    return cfg
