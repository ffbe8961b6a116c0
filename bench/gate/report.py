"""How verdicts are shown: a console table and a Markdown summary (the file and ``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.gate.series import TOP1
from bench.gate.stats import (
    BROKEN,
    FAILING,
    IMPROVED,
    INCONCLUSIVE,
    MISSING,
    NEW,
    PAIRED_TEST_NAME,
    REGRESSION,
    RUN_TEST_NAME,
    SKIPPED,
    TEST_NAME,
    UNCHANGED,
    Comparison,
)

COMPARED = (REGRESSION, IMPROVED, UNCHANGED, INCONCLUSIVE)  # verdicts of benchmarks measured on both sides

HEADERS = [
    "benchmark",
    "device",
    "baseline",
    "candidate",
    "change",
    "p-value",
    "limit",
    "n (base/cand)",
    "verdict",
    "note",
]


@dataclass
class GateResult:
    comparisons: list[Comparison]
    baseline: str
    candidate: str
    alpha: float
    config_source: str
    paired_alpha: float = 0.01
    machine_note: str = ""  # the machine of both sides, or what differs (--allow-machine-mismatch)
    checkpoint_note: str = ""  # the checkpoint both sides measured, or what differs (--allow-other-checkpoint)
    checkpoint_warning: bool = False
    extra: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.failing]

    @property
    def exit_code(self) -> int:
        return 1 if self.failing else 0


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "%":
        return f"{value:.2f}%"
    digits = 3 if abs(value) < 10 else 2 if abs(value) < 1000 else 0
    return f"{value:.{digits}f} {unit}"


def _change(c: Comparison) -> str:
    if c.metric == TOP1:
        return "-" if c.delta is None else f"{c.delta:+.2f} pt"
    if c.ratio is None or math.isnan(c.ratio):
        return "-"
    return f"x{c.ratio:.3f} ({(c.ratio - 1) * 100:+.1f}%)"


def _limit(c: Comparison) -> str:
    if c.threshold is None:
        return "-"
    if c.metric == TOP1:
        return f"-{c.threshold:g} pt"
    sign = "-" if c.higher_is_better else "+"
    return f"{sign}{c.threshold * 100:g}%"


def _p(c: Comparison) -> str:
    if c.p_value is None or math.isnan(c.p_value):
        return "-"
    return f"{c.p_value:.2g}"


def rows(result: GateResult) -> list[list[str]]:
    out = []
    for c in result.comparisons:
        n = f"{c.n_baseline}/{c.n_candidate}" if c.n_baseline or c.n_candidate else "-"
        out.append(
            [
                c.bench_id,
                c.device,
                _fmt(c.baseline, c.unit),
                _fmt(c.candidate, c.unit),
                _change(c),
                _p(c),
                _limit(c),
                n,
                c.verdict,
                c.note,
            ]
        )
    return out


def tally(result: GateResult) -> str:
    """How many benchmarks were compared, and how many were not (new, missing, skipped, broken)."""
    verdicts = [c.verdict for c in result.comparisons]
    parts = [f"{sum(v in COMPARED for v in verdicts)} compared"]
    parts += [f"{verdicts.count(v)} {v.lower()}" for v in (BROKEN, NEW, MISSING, SKIPPED) if v in verdicts]
    return ", ".join(parts)


def headline(result: GateResult) -> str:
    bad = result.failing
    improved = [c for c in result.comparisons if c.verdict == IMPROVED]
    unsure = [c for c in result.comparisons if c.verdict == INCONCLUSIVE]
    if bad:
        kinds = [f"{n} {word}" for word, n in _failing_counts(bad) if n]
        text = f"FAIL: {' and '.join(kinds)}: " + ", ".join(f"{c.bench_id} ({c.device})" for c in bad)
    else:
        text = "PASS: no regression"
    text += f"; {tally(result)}"
    if improved:
        text += f"; {len(improved)} improved"
    if unsure:
        text += f"; {len(unsure)} past the threshold but not significant"
    return text


def _failing_counts(bad: list[Comparison]) -> list[tuple[str, int]]:
    return [
        ("regression(s)", sum(c.verdict == REGRESSION for c in bad)),
        ("broken", sum(c.verdict == BROKEN for c in bad)),
    ]


def method_line(result: GateResult) -> str:
    if any(c.note.startswith("interleaved") for c in result.comparisons):
        test = f"{PAIRED_TEST_NAME} p < {result.paired_alpha:g}"
    else:
        test = f"{TEST_NAME} p < {result.alpha:g} AND {RUN_TEST_NAME}"
    values = any(c.p_value is None and c.metric != TOP1 and c.verdict in COMPARED for c in result.comparisons)
    value_rule = "one-value scenarios = ratio past the limit alone (no samples, no test); " if values else ""
    return (
        f"Regression = change past the limit AND {test}; {value_rule}"
        f"top-1 = drop beyond the budget in points (no test: one deterministic number). "
        f"Settings: {result.config_source}."
    )


def _crosses(result: GateResult) -> bool:
    return result.machine_note.startswith("this comparison crosses machines")


def console(result: GateResult) -> str:
    from tabulate import tabulate

    parts = [f"baseline:  {result.baseline}", f"candidate: {result.candidate}"]
    if result.checkpoint_note:
        parts.append(("WARNING: " if result.checkpoint_warning else "") + result.checkpoint_note)
    if result.machine_note:
        parts.append(("WARNING: " if _crosses(result) else "") + result.machine_note)
    parts += [tabulate(rows(result), headers=HEADERS, tablefmt="simple"), "", method_line(result)]
    parts += result.extra
    parts.append(headline(result))
    return "\n".join(parts)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: GateResult) -> str:
    icon = {"REGRESSION": ":x:", "BROKEN": ":x:", "improved": ":rocket:", "inconclusive": ":grey_question:"}
    lines = [f"## Benchmark gate: {'FAIL' if result.failing else 'PASS'}", "", headline(result), ""]
    for note, warn in ((result.checkpoint_note, result.checkpoint_warning), (result.machine_note, _crosses(result))):
        if note and warn:
            lines += [f"> **Warning:** {note}", ""]
    lines += [f"- baseline: `{result.baseline}`", f"- candidate: `{result.candidate}`"]
    if result.checkpoint_note and not result.checkpoint_warning:
        lines.append(f"- {result.checkpoint_note}")
    if result.machine_note and not _crosses(result):
        lines.append(f"- {result.machine_note}")
    lines.append("")
    lines.append("| " + " | ".join(HEADERS) + " |")
    lines.append("|" + "|".join("---" for _ in HEADERS) + "|")
    for c, row in zip(result.comparisons, rows(result), strict=True):
        row = list(row)
        if c.verdict in icon:
            row[8] = f"{icon[c.verdict]} {row[8]}"
        if c.verdict in FAILING:
            row[8] = f"**{row[8]}**"
        lines.append("| " + " | ".join(_md_cell(x) for x in row) + " |")
    lines += ["", method_line(result), *result.extra, ""]
    return "\n".join(lines)


def write_summary(result: GateResult, path: Path | None) -> list[Path]:
    """Write the Markdown summary to ``path`` and append it to ``$GITHUB_STEP_SUMMARY`` when that is set."""
    text = markdown(result)
    written = []
    if path is not None:
        path.write_text(text)
        written.append(path)
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step:
        with open(step, "a") as fh:
            fh.write(text + "\n")
        written.append(Path(step))
    return written
