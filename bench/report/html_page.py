"""``leaderboard.html``: one self-contained page a user can attach to a pull request.

The answer first; the table formatted (units in the headers, plain numbers, notes wrapped, a sticky header, sortable
by clicking a header); rows whose batch-1 samples scatter widely flagged; the Pareto plot embedded; the machine
fingerprint and the run configuration at the bottom. Nothing is loaded from elsewhere, and the page fits a
1280-pixel-wide window without cutting columns off.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.leaderboard import num

BASE = {"variant": ("variant", None), "device": ("device", None), "status": ("status", None)}
TRAILING = {
    "top1": ("top-1 %", "{:.2f}"),
    "top1_drop": ("drop pt", "{:.2f}"),
    "agreement": ("agree %", "{:.1f}"),
    "size_mb": ("MB", "{:.2f}"),
    "build_s": ("build s", "{:.1f}"),
    "within_budget": ("in budget", None),
    "note": ("note", None),
}


def shown_columns(scenarios: list[Any]) -> dict[str, tuple[str, str | None]]:
    """Column -> (header with its unit, number format), in page order; columns not listed are left off the page:
    the ranking speedup and its interval first, then each scenario's figures and speedup."""
    out = dict(BASE)
    for s in sorted(scenarios, key=lambda s: not s.ranks):
        if s.ranks and s.speedup_column:
            out[s.speedup_column] = (s.speedup_header, "{:.2f}")
            out.update({c: (f"95% CI {c.rsplit('_', 1)[-1]}", "{:.2f}") for c in s.interval_columns or ()})
        out.update({c.name: (c.header, c.fmt) for c in s.columns if c.header})
        if not s.ranks and s.speedup_column:
            out[s.speedup_column] = (s.speedup_header, "{:.2f}")
    return out | TRAILING


# A batch-1 coefficient of variation above this means a few samples far from the rest (one stalled call among
# thousands can do it): the p50 stands, the mean and p99 do not.
NOISY_COV = 0.5

STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; max-width: 1248px; }
.answer { font-size: 1.1em; padding: 10px 14px; background: #eef6ee; border-left: 4px solid #2ca02c; }
.scroll { max-height: 70vh; overflow-y: auto; }
table { border-collapse: collapse; width: 100%; table-layout: auto; font-size: 12px; }
th { position: sticky; top: 0; background: #f4f4f4; cursor: pointer; border-bottom: 2px solid #999;
     padding: 4px 5px; text-align: right; }
td { padding: 3px 5px; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
td.col0, th.col0, td.text, th.text { text-align: left; }
td.note { white-space: normal; max-width: 24em; min-width: 12em; text-align: left; }
tr.noisy td { background: #fff4e0; }
tr.failed td, tr.skipped td { color: #888; }
img { max-width: 100%; }
pre { background: #f7f7f7; padding: 8px; font-size: 11px; white-space: pre-wrap; word-break: break-all; }
"""

SORT_SCRIPT = """
document.querySelectorAll('th').forEach(function (th, index) {
  th.addEventListener('click', function () {
    var body = th.closest('table').querySelector('tbody');
    var rows = Array.from(body.querySelectorAll('tr'));
    var up = th.dataset.order !== 'up';
    th.dataset.order = up ? 'up' : 'down';
    rows.sort(function (a, b) {
      var x = a.children[index].dataset.sort || a.children[index].textContent;
      var y = b.children[index].dataset.sort || b.children[index].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return up ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
document.body.dataset.fits = String(document.documentElement.scrollWidth <= window.innerWidth);
"""


def _cell(shown: dict, column: str, value: Any) -> str:
    fmt = shown[column][1]
    if column == "within_budget":
        text = "" if value is None or pd.isna(value) else ("yes" if value else "no")
        return f"<td>{text}</td>"
    if fmt is None:
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        css = "note" if column == "note" else "text"
        return f'<td class="{css}">{html.escape(text)}</td>'
    number = num(value)
    if math.isnan(number):
        return '<td data-sort=""></td>'
    return f'<td data-sort="{number!r}">{html.escape(fmt.format(number))}</td>'


def _table(df: pd.DataFrame, scenarios: list[Any]) -> str:
    shown = shown_columns(scenarios)
    columns = [c for c in shown if c in df.columns]
    head = "".join(
        f'<th class="{"col0" if i == 0 else ("text" if shown[c][1] is None else "")}">{html.escape(shown[c][0])}</th>'
        for i, c in enumerate(columns)
    )
    body = []
    for rec in df.to_dict("records"):
        classes = [str(rec.get("status") or "")]
        if num(rec.get("cov")) > NOISY_COV:
            classes.append("noisy")
            rec = {
                **rec,
                "note": "; ".join(x for x in (f"noisy: batch-1 CoV {num(rec['cov']):.2f}", rec.get("note")) if x),
            }
        body.append(
            f'<tr class="{" ".join(classes)}">' + "".join(_cell(shown, c, rec.get(c)) for c in columns) + "</tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figures(files: dict[str, Path]) -> str:
    """Every PNG written before the page, embedded (the page must stand alone)."""
    out = []
    for name, path in files.items():
        if Path(path).suffix == ".png" and Path(path).is_file():
            data = base64.b64encode(Path(path).read_bytes()).decode()
            out.append(
                f'<h2>{html.escape(name)}</h2><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            )
    return "".join(out)


def write_html(path: Path, report: Any) -> Path:
    """Write the page to ``path``: the answer and its caveats, the table, the figures written so far, the machine
    and the run configuration."""
    df, config, machine = report.df, report.config, report.machine
    plot = _figures(report.files)
    answers = "".join(f"<div>{html.escape(line)}</div>" for line in report.answer.splitlines())
    rests = "".join(f"<li>{html.escape(sentence)}</li>" for _, sentence in report.caveats)
    if rests:
        answers += f"<p><b>What this answer rests on:</b></p><ul>{rests}</ul>"
    title = html.escape(str(config.get("run_id") or "optbench run"))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>optbench leaderboard: {title}</title><style>{STYLE}</style></head>
<body>
<h1>optbench leaderboard: {title}</h1>
<div class="answer">{answers}</div>
<p>Sorted by the speedup over fp32 at batch 1 (paired with fp32 at the same moments), so the absolute p50s, taken
minutes apart on a machine whose speed drifts, may look out of order. Click a header to sort by it. Rows in orange
scattered widely at batch 1 (CoV above {NOISY_COV}): trust their p50, not their p99.</p>
<div class="scroll">{_table(df, report.scenarios)}</div>
{plot}
<h2>Machine</h2><pre>{html.escape(json.dumps(machine, indent=1, default=str))}</pre>
<h2>Run configuration</h2><pre>{html.escape(json.dumps(config, indent=1, default=str))}</pre>
<script>{SORT_SCRIPT}</script>
</body></html>
"""
    path.write_text(page)
    return path


def write(report: Any, run_dir: Path) -> dict[str, Path]:
    return {"leaderboard.html": write_html(Path(run_dir) / "leaderboard.html", report)}
