"""Scenarios measured after the sweep (``staged``: serving), each on the variants its stage picks from the sweep's
rows, in a process of its own that loads the variant the sweep saved (nothing is built again). A failure is a
``failed`` row of that scenario; the sweep's rows stand."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.results_io import RESULTS_FILE, append_rows, read_rows
from bench.run.client import MeasurementServer, ServerError
from bench.run.process import safe_name, status_row
from optim.registry import REFERENCE


def _variant_dir(rows: list[dict[str, Any]], recipe: str, device: str) -> str | None:
    for row in rows:
        if row.get("recipe") == recipe and row.get("device") == device and row.get("variant_dir"):
            return str(row["variant_dir"])
    return None


def _measure(job: Any, scenario: Any, load_dir: str, run_dir: Path) -> list[dict[str, Any]]:
    log = run_dir / "logs" / f"{safe_name(job.recipe)}-{scenario.name}.log"
    server = MeasurementServer(f"{job.recipe} ({scenario.name})", job, log, timeout_s=job.config.timeout_s)
    try:
        server.start(load_dir=load_dir)
        server.measure(scenario)
        return server.finish()
    except ServerError as exc:
        row = status_row(job, "failed", f"{scenario.name}: {exc}", exc.code)
        return [{**row, "scenario": scenario.name}]
    finally:
        server.close()


def _stage(cfg: Any, scenario_cfg: Any, run_dir: Path, rows: list[dict[str, Any]], progress: bool) -> None:
    from bench.scenarios import get

    scenario = get(scenario_cfg.name)
    try:
        plan = scenario.stage(scenario_cfg, rows, cfg.device, REFERENCE)
    except ValueError as exc:
        print(f"warning: {scenario.name} not measured: {exc}", file=sys.stderr)
        return
    if progress:
        skipped = f"; not measured: {', '.join(plan.skipped)} (--serve-top)" if plan.skipped else ""
        done = f"; measured before: {', '.join(plan.done)}" if plan.done else ""
        print(f"{scenario.name} stage: {', '.join(plan.recipes) or 'nothing to do'} at {plan.bound_note}"
              f"{skipped}{done}", file=sys.stderr)  # fmt: skip
    staged = cfg.replace(scenarios=(plan.config,))
    for recipe in plan.recipes:
        job = staged.job(recipe, str(run_dir), accuracy=False)
        load_dir = _variant_dir(rows, recipe, cfg.device)
        if load_dir is None or not (Path(load_dir) / "manifest.json").is_file():
            new = [{**status_row(job, "failed", f"{scenario.name}: the sweep saved no copy of this variant to load"),
                    "scenario": scenario.name}]  # fmt: skip
        else:
            new = _measure(job, plan.config, load_dir, run_dir)
        append_rows(run_dir / RESULTS_FILE, new)
        if progress:
            first = new[0]
            what = first.get("serve_config") or first.get("note") or first.get("error") or first.get("status")
            print(f"  {recipe} ({scenario.name}): {first.get('status')}: {what}", file=sys.stderr)


def check_stages(cfg: Any, run_dir: Path) -> None:
    """On ``--resume``, refuse before anything runs a staged scenario that contradicts the run's rows (InputError);
    what cannot be planned yet (fp32 not measured) is left to the stage."""
    from bench.scenarios import get
    from bench.scenarios.base import StageConflict
    from data.errors import InputError

    rows = read_rows(run_dir / RESULTS_FILE) if (run_dir / RESULTS_FILE).is_file() else []
    for scenario_cfg in (s for s in cfg.scenarios if get(s.name).staged):
        try:
            get(scenario_cfg.name).stage(scenario_cfg, rows, cfg.device, REFERENCE)
        except StageConflict as exc:
            raise InputError(str(exc)) from None
        except ValueError:
            pass


def run_stages(cfg: Any, run_dir: Path, rows: list[dict[str, Any]], progress: bool = True) -> list[dict[str, Any]]:
    """Every staged scenario of the run, after the sweep whose ``rows`` are given; returns all rows of the run
    (``rows`` themselves when the run has no staged scenario)."""
    from bench.scenarios import get

    staged = [s for s in cfg.scenarios if get(s.name).staged]
    for scenario_cfg in staged:
        _stage(cfg, scenario_cfg, run_dir, read_rows(run_dir / RESULTS_FILE), progress)
    return read_rows(run_dir / RESULTS_FILE) if staged else rows
