"""Gate settings from ``[tool.optbench.gate]`` in pyproject.toml, overridable on the command line.

```toml
[tool.optbench.gate]
threshold = "5%"        # timing regression threshold (ratio of medians)
alpha = 0.001           # one-sided Mann-Whitney U level (raw samples)
run_alpha = 0.01        # one-sided Welch t level on run medians, used when both sides pooled >= 2 runs
paired_alpha = 0.01     # one-sided Wilcoxon signed-rank level on round ratios (interleaved A/B)
top1_budget = 1.0       # points of top-1 a variant may lose

[tool.optbench.gate.thresholds]   # fnmatch patterns on "variant/scenario" (or "device:variant/scenario")
"ptq(ort)/latency" = "10%"
"*/throughput" = "8%"

[tool.optbench.gate.top1_budgets]
"ptq*" = 1.5
```

The longest matching pattern wins, so a specific entry beats a wildcard whatever the order in the file.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gate.stats import DEFAULT_ALPHA, DEFAULT_PAIRED_ALPHA, DEFAULT_RUN_ALPHA
from data.errors import InputError

DEFAULT_THRESHOLD = 0.05
DEFAULT_TOP1_BUDGET = 1.0


def parse_threshold(value: Any, where: str) -> float:
    """``"5%"`` or ``0.05`` -> 0.05. A bare number of 1 or more is ambiguous (1% or 100%?) and refused."""
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        out = float(text[:-1]) / 100 if percent else float(text)
    except ValueError:
        raise InputError(f"{where}: threshold {text!r} is not a percentage like '5%' or a fraction like 0.05") from None
    if not percent and out >= 1:
        raise InputError(
            f"{where}: threshold {text!r} is ambiguous; write a percentage like '5%' or a fraction like 0.05"
        )
    if not math.isfinite(out) or out < 0 or out >= 1:
        raise InputError(f"{where}: threshold {text!r} must be between 0% and 100%")
    return out


def _budget(value: Any, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: top-1 budget {value!r} is not a number of points") from None
    if not math.isfinite(out) or out < 0:
        raise InputError(f"{where}: top-1 budget {value!r} must be >= 0 points")
    return out


@dataclass
class GateConfig:
    threshold: float = DEFAULT_THRESHOLD
    alpha: float = DEFAULT_ALPHA
    run_alpha: float = DEFAULT_RUN_ALPHA
    paired_alpha: float = DEFAULT_PAIRED_ALPHA
    top1_budget: float = DEFAULT_TOP1_BUDGET
    thresholds: dict[str, float] = field(default_factory=dict)
    top1_budgets: dict[str, float] = field(default_factory=dict)
    threshold_override: float | None = None  # --threshold beats everything in the file
    top1_override: float | None = None
    source: str = "defaults"

    def _match(self, table: dict[str, float], bench_id: str, device: str, group: str | None = None) -> float | None:
        names = [bench_id, f"{device}:{bench_id}"] + ([group] if group else [])
        hits = [p for p in table if any(fnmatch.fnmatchcase(n, p) for n in names)]
        return table[max(hits, key=len)] if hits else None

    def threshold_for(self, bench_id: str, device: str) -> float:
        if self.threshold_override is not None:
            return self.threshold_override
        hit = self._match(self.thresholds, bench_id, device)
        return self.threshold if hit is None else hit

    def top1_budget_for(self, bench_id: str, device: str) -> float:
        if self.top1_override is not None:
            return self.top1_override
        variant = bench_id.rsplit("/", 1)[0]
        hit = self._match(self.top1_budgets, bench_id, device, group=variant)
        return self.top1_budget if hit is None else hit


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml from ``start`` (default: the working directory) upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            from data.errors import MissingDependencyError

            raise MissingDependencyError(
                "reading pyproject.toml on Python 3.10 needs tomli: pip install tomli"
            ) from None
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read {path} as TOML: {str(exc).splitlines()[0]}") from None


def load_config(pyproject: str | Path | None = None) -> GateConfig:
    """Settings from ``[tool.optbench.gate]`` of the given (or nearest) pyproject.toml; defaults without one."""
    path = Path(pyproject) if pyproject else find_pyproject()
    if path is None:
        return GateConfig()
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    table = _read_toml(path).get("tool", {}).get("optbench", {}).get("gate", {})
    if not isinstance(table, dict):
        raise InputError(f"{path}: [tool.optbench.gate] must be a table")
    where = f"{path} [tool.optbench.gate]"
    known = {"threshold", "alpha", "run_alpha", "paired_alpha", "top1_budget", "thresholds", "top1_budgets"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    cfg = GateConfig(source=str(path))
    if "threshold" in table:
        cfg.threshold = parse_threshold(table["threshold"], where)
    if "alpha" in table:
        cfg.alpha = parse_alpha(table["alpha"], where)
    if "run_alpha" in table:
        cfg.run_alpha = parse_alpha(table["run_alpha"], where)
    if "paired_alpha" in table:
        cfg.paired_alpha = parse_alpha(table["paired_alpha"], where)
    if "top1_budget" in table:
        cfg.top1_budget = _budget(table["top1_budget"], where)
    for key, conv, target in (
        ("thresholds", parse_threshold, cfg.thresholds),
        ("top1_budgets", _budget, cfg.top1_budgets),
    ):
        sub = table.get(key, {})
        if not isinstance(sub, dict):
            raise InputError(f"{where}: {key} must be a table of pattern = value")
        for pattern, value in sub.items():
            target[str(pattern)] = conv(value, f"{where}.{key} {pattern!r}")
    return cfg


def parse_alpha(value: Any, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: alpha {value!r} is not a number") from None
    if not 0 < out < 0.5:
        raise InputError(f"{where}: alpha {value!r} must be between 0 and 0.5 (e.g. 0.001)")
    return out
