"""What an export reads from a finished run: its rows, its configuration, the chosen variant's rows and saved
folder, its kept predictions and its measured serving configuration. Nothing in the run directory is written.

The default variant is the one the run's answer named (the fastest ok variant within the run's ``max_drop``), chosen
by the report's own functions, so an export can never disagree with the leaderboard it came from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.errors import InputError

SERVE_SCENARIO = "serve"
SERVE_FIELDS = {"max_batch": int, "max_delay_ms": float, "instances": int, "threads": int}


@dataclass
class RunView:
    """A run directory read once: ``config`` is run_config.json as plain data (empty for a run without one)."""

    directory: Path
    rows: list[dict[str, Any]]
    config: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.config.get("run_id") or self.directory.name)

    @property
    def max_drop(self) -> float:
        try:
            return float(self.config.get("max_drop", 1.0))
        except (TypeError, ValueError):
            return 1.0

    @property
    def device(self) -> str:
        return str(self.config.get("device") or next((r.get("device") for r in self.rows), None) or "cpu")


@dataclass
class Chosen:
    """The variant to export: its ok rows (one per scenario), its leaderboard record and where it was saved."""

    run: RunView
    recipe: str
    device: str
    rows: list[dict[str, Any]]
    record: dict[str, Any] = field(default_factory=dict)

    def over_budget(self) -> str | None:
        """Why this variant is not one the run's answer could name (its top-1 drop over the run's budget), or None."""
        if self.record.get("within_budget") is not False:  # True, or unknown (no accuracy measured)
            return None
        drop = self.record.get("top1_drop")
        lost = f"loses {float(drop):.2f} points of top-1" if isinstance(drop, int | float) else "loses top-1"
        return f"{self.recipe} {lost}, over the run's {self.run.max_drop:g}-point budget"

    @property
    def folder(self) -> Path:
        from bench.run.process import safe_name

        return self.run.directory / "variants" / safe_name(self.recipe) / self.device

    @property
    def predictions(self) -> Path:
        from bench.run.process import predictions_path

        return predictions_path(self.run.directory, self.recipe, self.device)

    def row(self, scenario: str) -> dict[str, Any]:
        return next((r for r in self.rows if r.get("scenario") == scenario), {})

    @property
    def first(self) -> dict[str, Any]:
        return self.rows[0]

    def manifest(self) -> dict[str, Any]:
        from optim.variant import MANIFEST

        path = self.folder / MANIFEST
        if not path.is_file():
            why = self.first.get("save_error") or (self.first.get("manifest") or {}).get("save_error")
            reason = f" ({why})" if why else ""
            raise InputError(f"variant {self.recipe} of run {self.run.run_id} was measured but not saved{reason}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("load"), dict):
            raise InputError(f"{path} is not a variant manifest (no 'load' object)")
        return data

    def serve_best(self) -> dict[str, Any] | None:
        """The serving configuration measured for this variant (a ``serve`` row's ``serve_best``), checked."""
        best = self.row(SERVE_SCENARIO).get("serve_best")
        if not isinstance(best, dict):
            return None
        out = dict(best)
        for name, kind in SERVE_FIELDS.items():
            try:
                value = kind(best[name])
            except (KeyError, TypeError, ValueError):
                return None
            if (kind is int and value < 1) or not math.isfinite(value) or value < 0:
                return None
            out[name] = value
        return out


def open_run(run_id: str) -> RunView:
    """The run named ``run_id`` under the results folder's runs/ (a name, as ``--resume`` takes it)."""
    from bench.results_io import RESULTS_FILE
    from bench.run.run_dir import check_run_id, runs_root

    root = runs_root()
    directory = root / check_run_id(run_id, "RUN_ID")
    if not (directory / RESULTS_FILE).is_file():
        runs = [p for p in root.iterdir() if (p / RESULTS_FILE).is_file()] if root.is_dir() else []
        known = [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]
        more = f" (the newest 8 of {len(known)})" if len(known) > 8 else ""
        hint = f"; runs there{more}: {', '.join(known[:8])}" if known else ""
        raise InputError(f"no run {run_id!r} with results under {root}{hint}")
    return read_run(directory)


def read_run(directory: Path) -> RunView:
    """A run directory by path (what the sweep hands over); run_config.json is read as plain data, leniently: a run
    of an older optbench still exports."""
    from bench.results_io import RESULTS_FILE, read_rows

    directory = Path(directory)
    if not (directory / RESULTS_FILE).is_file():
        raise InputError(f"{directory} is not a run directory (no {RESULTS_FILE})")
    config: dict[str, Any] = {}
    path = directory / "run_config.json"
    if path.is_file():
        try:
            loaded = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            loaded = {}
        config = loaded if isinstance(loaded, dict) else {}
    return RunView(directory, read_rows(directory / RESULTS_FILE), config)


def _leaderboard(run: RunView):
    from bench.report.leaderboard import build_leaderboard

    return build_leaderboard(run.rows, run.max_drop)


def choose(run: RunView, recipe: str | None = None) -> Chosen:
    """``recipe``'s rows on the run's device, or, without one, the variant the run's answer named."""
    df = _leaderboard(run)
    if recipe is None:
        from bench.report.answer import best_within_budget

        best = best_within_budget(df, run.device)
        if best is None:
            raise InputError(
                f"run {run.run_id} has no measured variant within its {run.max_drop:g}-point top-1 budget on "
                f"{run.device}; name one with --variant (see its leaderboard)"
            )
        recipe = str(best["variant"])
    names = {str(r.get(k)) for r in run.rows for k in ("variant", "recipe") if r.get(k)}
    if recipe not in names:
        raise InputError(f"run {run.run_id} has no variant {recipe!r}; it measured: {', '.join(sorted(names))}")
    mine = [r for r in run.rows if recipe in (r.get("variant"), r.get("recipe"))]
    devices = [d for d in dict.fromkeys(str(r.get("device")) for r in mine)]
    device = run.device if run.device in devices else devices[0]
    mine = [r for r in mine if str(r.get("device")) == device]
    ok = [r for r in mine if r.get("status") == "ok"]
    if not ok:
        last = mine[-1]
        why = last.get("error") or last.get("reason") or "no reason recorded"
        status = last.get("status", "failed")
        raise InputError(f"variant {recipe} {status} in run {run.run_id} ({why}): nothing to export")
    hit = df[(df["variant"] == ok[0].get("variant")) & (df["device"] == device)]
    record = hit.iloc[0].to_dict() if len(hit) else {}
    return Chosen(run, str(ok[0].get("recipe") or recipe), device, ok, record)
