"""The sweep: every recipe of a run configuration, measured by an executor, rows appended as they finish.

There is one loop, whatever measures: :class:`~bench.run.local.LocalExecutor` on this machine (paired with a warm
fp32 reference, or ``--unpaired``), or :class:`~bench.run.ray_executor.RayExecutor` on a cluster. An executor takes
the jobs and yields each one's rows; the loop records them, skips what this machine cannot run and resumes what an
interrupted run left.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from bench.config import Job, RunConfig
from bench.results_io import RESULTS_FILE, append_rows, read_rows
from bench.run.pairing import REFERENCE
from bench.run.process import status_row
from data.errors import InputError


class Executor(Protocol):
    """Where jobs are measured. ``run`` yields one list of rows per job, in any order, as each finishes; with a
    ``reference`` the variants are paired with it, and its own rows come too when ``record_reference``."""

    name: str

    def check(self) -> None:
        """Raise InputError, before the command writes anything, when jobs could not be measured there at all."""

    def run(self, variants: Sequence[Job], reference: Job | None, record_reference: bool) -> Iterator[list[dict]]: ...


def validate_recipes(recipes: Sequence[str]) -> list[str]:
    """Parse every recipe up front (bad input fails before any work) and put the fp32 reference first."""
    from optim.recipe import parse

    normalized: list[str] = []
    for text in recipes:
        name = str(parse(text))
        if name not in normalized:
            normalized.append(name)
    if not normalized:
        raise InputError("no recipes to run")
    if REFERENCE in normalized:
        normalized.remove(REFERENCE)
    return [REFERENCE, *normalized]  # the reference for speedups, top-1 drop and agreement is always measured


def finished_recipes(results_path: Path, device: str, retry_failed: bool = False) -> set[str]:
    """Recipes already measured (or recorded as skipped, or failed unless ``retry_failed``) on ``device``."""
    if not results_path.is_file():
        return set()
    done = set()
    for row in read_rows(results_path):
        if row.get("device") != device:
            continue
        if retry_failed and row.get("status") == "failed":
            continue
        done.add(str(row.get("recipe")))
    return done


def set_aside_failed(results_path: Path, device: str) -> int:
    """Move the ``failed`` rows of ``device`` to ``results.retried.jsonl`` before they are measured again.

    A failure may have come from the kill that interrupted the run; the rows are kept beside the results, not
    lost, and the leaderboard reads only the new attempt. Returns how many rows moved.
    """
    if not results_path.is_file():
        return 0
    rows = read_rows(results_path)
    failed = [r for r in rows if r.get("device") == device and r.get("status") == "failed"]
    if not failed:
        return 0
    append_rows(results_path.with_name("results.retried.jsonl"), failed)
    tmp = results_path.with_name(results_path.name + ".tmp")
    shutil.copyfile(results_path, results_path.with_name(results_path.name + ".bak"))
    tmp.unlink(missing_ok=True)
    append_rows(tmp, [r for r in rows if r not in failed])
    tmp.replace(results_path)
    results_path.with_name(results_path.name + ".bak").unlink()
    return len(failed)


def run_sweep(
    cfg: RunConfig,
    run_dir: Path,
    executor: Executor,
    progress: bool = True,
    retry_failed: bool = False,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure every recipe of ``cfg`` not finished yet; returns all rows of the run (old and new). Staged
    scenarios (serving) are measured afterwards, on the variants their stage picks (:mod:`bench.run.stages`)."""
    from bench.scenarios import get
    from optim.recipe import parse

    cfg = cfg.replace(scenarios=tuple(s for s in cfg.scenarios if not get(s.name).staged))
    results_path = run_dir / RESULTS_FILE
    run_dir.mkdir(parents=True, exist_ok=True)
    if retry_failed:
        moved = set_aside_failed(results_path, cfg.device)
        if moved:
            print(f"measuring {moved} failed row(s) again (kept in results.retried.jsonl)", file=sys.stderr)
    done = finished_recipes(results_path, cfg.device)
    todo = [r for r in cfg.recipes if r not in done]
    if done:
        print(f"resuming {cfg.run_id}: {len(done)} recipes already done, {len(todo)} to go", file=sys.stderr)
    started = time.time()

    def record(rows: list[dict[str, Any]]) -> None:
        now = time.time()
        for row in rows:
            row.setdefault("executor", executor.name)
            row.setdefault("job_seconds", round(now - started, 2))
        append_rows(results_path, rows)
        if on_rows:
            on_rows(rows)
        if progress and rows:
            status = rows[0].get("status")
            detail = f" ({rows[0].get('error') or rows[0].get('reason')})" if status != "ok" else ""
            print(f"  {rows[0].get('recipe')}: {status}{detail}", file=sys.stderr)

    jobs = []
    for recipe in todo:
        job = cfg.job(recipe, str(run_dir))
        reason = parse(recipe).unavailable_reason(cfg.device) or cfg.recipe_choice.get("skipped", {}).get(recipe)
        if reason:
            record([status_row(job, "skipped", reason)])
        else:
            jobs.append(job)
    record_reference = any(j.recipe == REFERENCE for j in jobs)
    if cfg.paired:
        variants = likely_leaders_first([j for j in jobs if j.recipe != REFERENCE], cfg.device)
        stream = executor.run(variants, cfg.job(REFERENCE, str(run_dir)), record_reference)
    else:
        stream = executor.run(jobs, None, False)
    for rows in stream:
        record(rows)
        started = time.time()
    return read_rows(results_path)


def likely_leaders_first(jobs: Sequence[Job], device: str) -> list[Job]:
    """The jobs with the most compressing steps (INT8, pruning; FP16 on CUDA) first, else in the order given.

    A variant's rounds stop early once its interval lies below a variant measured before it
    (:mod:`bench.measure.sequential`), so the sooner the leaders are measured the more of the rest can stop at
    the minimum. Which variants are measured first changes the sweep's length, not its rows: each is still
    paired with fp32 in its own rounds."""
    from optim.recipe import parse

    return sorted(jobs, key=lambda job: -parse(job.recipe).compressing_steps(device))


def sweep_verdict(rows: list[dict[str, Any]], device: str) -> tuple[int, str | None]:
    """Exit code and the one line that says why a sweep measured nothing useful (0 and None when it did)."""
    mine = [r for r in rows if r.get("device") == device]
    ref_ok = any(r.get("recipe") == REFERENCE and r.get("status") == "ok" for r in mine)
    others_ok = [r for r in mine if r.get("recipe") != REFERENCE and r.get("status") == "ok"]
    asked = {str(r.get("recipe")) for r in mine if r.get("recipe") != REFERENCE}
    skipped = [r for r in mine if r.get("recipe") != REFERENCE and r.get("status") == "skipped"]
    if not ref_ok:
        failed = next((r for r in mine if r.get("recipe") == REFERENCE and r.get("status") == "failed"), None)
        why = f": {failed.get('error')}" if failed else ""
        return 1, f"the fp32 reference was not measured{why}; no speedup or top-1 drop can be trusted"
    if asked and not others_ok and len(skipped) == len(asked):
        first = skipped[0]
        return 1, f"every variant besides fp32 was skipped here ({first.get('recipe')}: {first.get('reason')})"
    if asked and not others_ok:
        return 1, f"none of the {len(asked)} variant(s) besides fp32 was measured (see explanations.md)"
    return 0, None
