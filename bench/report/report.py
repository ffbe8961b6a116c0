"""One report value that every writer receives: the rows, the leaderboard, the answer, what it rests on, the run
configuration and the machine. Built once per sweep (and by ``pytest bench`` from its benchmarks), so every file a
run writes shows the same figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.answer import answer_line
from bench.report.caveats import caveats, resumed_with_other_settings, with_caveats
from bench.report.leaderboard import build_leaderboard
from bench.scenarios import in_rows


@dataclass
class Report:
    """What a run measured, ready to write. ``files`` fills as writers run (a page embeds the plots before it)."""

    rows: list[dict[str, Any]]
    config: dict[str, Any]  # the run configuration as run_config.json holds it
    df: pd.DataFrame
    scenarios: list[Any]
    answer: str
    caveats: list[tuple[str, str]]
    machine: dict[str, Any]
    wandb: bool = False
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def max_drop(self) -> float:
        return float(self.config.get("max_drop", 1.0))

    @property
    def device(self) -> str | None:
        return self.config.get("device")

    def machine_line(self) -> str:
        """Where every figure of the run was measured, for the files that travel without the page."""
        from models.machine import hardware_kind

        threads = self.machine.get("threads")
        return f"Measured on {hardware_kind(self.machine, str(self.device or 'cpu'))}" + (
            f", {threads} threads" if threads else ""
        )

    def title(self, run_dir: Path) -> str:
        fp = self.machine
        return (
            f"{self.config.get('run_id', run_dir.name)}: {fp.get('cpu_model') or ''} {fp.get('gpu_name') or ''}".strip()
        )


def run_fingerprint(rows: list[dict[str, Any]], device: str | None) -> dict[str, Any]:
    """The fingerprint the rows carry (the measuring processes'), else this process's."""
    for row in rows:
        if isinstance(row.get("fingerprint"), dict):
            return row["fingerprint"]
    from models.machine import fingerprint

    return fingerprint(device or "cpu")


def by_hardware(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows measured on several kinds of machine (a cluster) get the kind in their device label ("cpu @ Xeon ..."),
    so every comparison, speedup and answer stays within one kind of hardware."""
    from models.machine import hardware_kind

    kinds = {
        hardware_kind(r["fingerprint"], str(r.get("device"))) for r in rows if isinstance(r.get("fingerprint"), dict)
    }
    if len(kinds) < 2:
        return rows
    out = []
    for row in rows:
        fp = row.get("fingerprint")
        if isinstance(fp, dict):
            row = {**row, "device": f"{row.get('device')} @ {hardware_kind(fp, str(row.get('device')))}"}
        out.append(row)
    return out


def build_report(rows: list[dict[str, Any]], config: dict[str, Any], wandb: bool = False) -> Report:
    """The leaderboard, the answer (one line per device of the run) and its caveats, from the rows."""
    rows = by_hardware(rows)
    max_drop = float(config.get("max_drop", 1.0))
    device = config.get("device")
    scenarios = in_rows(rows)
    df = build_leaderboard(rows, max_drop, scenarios)
    devices = sorted({str(r.get("device")) for r in rows if str(r.get("device", "")).startswith(str(device))})
    answer = "\n".join(answer_line(df, max_drop, d, scenarios) for d in devices or [device])
    skipped = max((int(r.get("skipped_images") or 0) for r in rows), default=0)
    if skipped:
        answer += f" ({skipped} unreadable images were left out of the data: --skip-bad-images)"
    found = caveats(df, rows, max_drop) + resumed_with_other_settings(config)
    machine = run_fingerprint(rows, device)
    return Report(rows, config, df, scenarios, with_caveats(answer, found), found, machine, wandb)
