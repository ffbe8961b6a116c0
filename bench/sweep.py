"""The sweep: every recipe, each built and measured in its own process, rows appended as they finish."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.executor import Executor, LocalProcessExecutor, status_row
from bench.results_io import RESULTS_FILE, append_rows, read_rows
from bench.timing import ScenarioConfig
from bench.worker import Job
from models.errors import InputError

REFERENCE = "fp32"  # every speedup, top-1 drop and agreement is relative to this recipe


@dataclass(frozen=True)
class SweepConfig:
    recipes: tuple[str, ...]
    device: str
    run_dir: Path
    run_id: str
    scenarios: tuple[ScenarioConfig, ...]
    ckpt: str | None = None
    arch: str | None = None
    num_classes: int | None = None
    img_size: int | None = None
    data_spec: str | None = "digits"
    data_dir: str | None = None
    threads: int = 1
    seed: int = 0
    calib_size: int = 512
    quick: bool = False
    accuracy: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def job(self, recipe: str) -> Job:
        """The job for one recipe: every other Job field is copied from this config, so the two cannot drift."""
        shared = {f.name: getattr(self, f.name) for f in fields(Job) if f.name not in ("recipe", "run_dir", "options")}
        return Job(recipe=recipe, run_dir=str(self.run_dir), options=dict(self.options), **shared)


def finished_recipes(results_path: Path, device: str) -> set[str]:
    """Recipes already measured (or recorded as failed/skipped) on ``device``: resume skips them."""
    if not results_path.is_file():
        return set()
    return {str(r.get("recipe")) for r in read_rows(results_path) if r.get("device") == device}


def run_sweep(
    cfg: SweepConfig,
    executor: Executor | None = None,
    progress: bool = True,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every recipe not finished yet; returns all rows of the run (old and new)."""
    from tqdm import tqdm

    from optim.recipe import parse

    results_path = cfg.run_dir / RESULTS_FILE
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    executor = executor or LocalProcessExecutor(log_dir=cfg.run_dir / "logs")
    done = finished_recipes(results_path, cfg.device)
    todo = [r for r in cfg.recipes if r not in done]
    if done:
        print(f"resuming {cfg.run_id}: {len(done)} recipes already done, {len(todo)} to go", file=sys.stderr)
    bar = tqdm(todo, desc="sweep", unit="variant", disable=not progress, file=sys.stderr)
    for recipe in bar:
        bar.set_description(f"building+measuring {recipe}")
        job = cfg.job(recipe)
        reason = parse(recipe).unavailable_reason(cfg.device)
        start = time.perf_counter()
        rows = [status_row(job, "skipped", reason)] if reason else executor.run(job)
        for row in rows:
            row.setdefault("job_seconds", round(time.perf_counter() - start, 2))
        append_rows(results_path, rows)
        if on_rows:
            on_rows(rows)
        status = rows[0].get("status") if rows else "?"
        if progress:
            tqdm.write(
                f"  {recipe}: {status}"
                + (f" ({rows[0].get('error') or rows[0].get('reason')})" if status != "ok" else ""),
                file=sys.stderr,
            )
    return read_rows(results_path)


def validate_recipes(recipes: list[str]) -> list[str]:
    """Parse every recipe up front (bad input fails before any work) and put the fp32 reference first."""
    from optim.recipe import parse

    normalized = []
    for text in recipes:
        name = str(parse(text))
        if name not in normalized:
            normalized.append(name)
    if not normalized:
        raise InputError("no recipes to run")
    if REFERENCE in normalized:
        normalized.remove(REFERENCE)
    return [REFERENCE, *normalized]  # the reference for speedups, top-1 drop and agreement is always measured
