"""``results.jsonl``: one JSON row per variant x scenario, appended as each job finishes.

Appends are flushed and fsynced so an interrupted sweep loses at most the row being written; a torn
last line is skipped when reading and never glued to the next row.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data.errors import InputError

RESULTS_FILE = "results.jsonl"


def read_rows(path: str | Path, strict: bool = False) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"results file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if strict:
                raise InputError(f"{path}:{number} is not a JSON row") from None
            print(f"warning: skipping unreadable line {number} of {path}", file=sys.stderr)
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def append_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    needs_newline = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with open(path, "a") as fh:
        if needs_newline:  # a torn line from an interrupted write stays torn; the next row starts clean
            fh.write("\n")
        for row in rows:
            fh.write(json.dumps(row, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
