"""The ``--out`` folder: its eight file names, an empty start, a stand-in for each file a step did not write, logs.txt.

A lent machine hands back at most eight files, flat; so the check writes exactly these, and nothing else there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.run.process import safe_name
from bench.tools.gpu_check.process import Step, tail
from data.errors import InputError

SUMMARY_MD, SUMMARY_JSON, LEADERBOARD, RESULTS = "summary.md", "summary.json", "leaderboard.md", "results.jsonl"
PYTEST_TXT, TIMERS, PROFILE_TXT, LOGS = "pytest-gpu.txt", "timers.json", "profile.txt", "logs.txt"
OUTPUT_FILES = (SUMMARY_MD, SUMMARY_JSON, LEADERBOARD, RESULTS, PYTEST_TXT, TIMERS, PROFILE_TXT, LOGS)


def prepare_out(out: Path) -> Path:
    """``--out`` as an absolute folder holding none of the check's files; other files there are bad input."""
    out = out.expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
    if foreign:
        raise InputError(f"--out {out} holds other files ({', '.join(foreign[:3])}); give an empty or new folder")
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    return out


def write_missing(out_dir: Path) -> None:
    """A line in each file a step was stopped or failed before writing, so every file is there to read."""
    for name, default in ((PYTEST_TXT, "pytest -m gpu did not run\n"), (PROFILE_TXT, "profile did not run\n")):
        if not (out_dir / name).exists():
            (out_dir / name).write_text(default)
    if not (out_dir / TIMERS).exists():
        (out_dir / TIMERS).write_text(json.dumps({"error": "the timers step wrote nothing; see logs.txt"}) + "\n")


def write_logs(out_dir: Path, steps: list[Step], run_dir: Path, outcomes: list[dict[str, Any]]) -> None:
    """The tail of every step's output, and of each failed variant's own log: why something failed."""
    parts = []
    for s in steps:
        parts.append(f"===== {s.name}: {s.status} (exit {s.returncode}, {s.seconds} s) =====")
        if s.command:
            parts.append("$ " + " ".join(s.command))
        if s.log:
            parts.append(tail(s.log))
        parts.append("")
    for o in outcomes:
        if o.get("status") == "failed":
            for log in sorted((run_dir / "logs").glob(f"{safe_name(o['recipe'])}*.log")):
                parts += [f"===== variant log {log.name} =====", tail(log, 80), ""]
    text = "\n".join(parts)
    (out_dir / LOGS).write_text(text[-2_000_000:])
