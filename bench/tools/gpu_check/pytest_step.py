"""The pytest step: every test marked ``gpu``, no ``-x``, the slowest compile last, until the deadline.

The ids are collected first so that a test the deadline cut off is reported as ``NOT RUN``, not silently absent,
and pytest-gpu.txt lists each test's outcome before pytest's own summary and failures.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.tools.gpu_check.outputs import PYTEST_TXT
from bench.tools.gpu_check.plan import Clock, Plan
from bench.tools.gpu_check.process import KILL_GRACE_S, Step, capture, run_step

_RESULT = re.compile(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


def pytest_order(ids: Sequence[str]) -> list[str]:
    """Collection order, but max-autotune compiles last: autotuning makes it the slowest test even on tiny inputs."""
    return [i for i in ids if "max-autotune" not in i] + [i for i in ids if "max-autotune" in i]


def pytest_results(output: str) -> dict[str, str]:
    """Test id -> status, from ``pytest -v`` lines (the last word on a test wins: an ERROR after a PASSED)."""
    out: dict[str, str] = {}
    for line in output.splitlines():
        found = _RESULT.match(line)
        if found:
            out[found[1]] = found[2] if out.get(found[1]) != "FAILED" else "FAILED"
    return out


def collect_gpu_tests(env: dict[str, str], timeout_s: float) -> tuple[list[str], str]:
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests", "--collect-only", "-q", "-p", "no:cacheprovider"]
    command.append("--continue-on-collection-errors")
    _, out = capture(command, env, timeout_s)
    return [line for line in out.splitlines() if re.fullmatch(r"\S+\.py::\S.*", line) and " " not in line], out


def run_pytest(plan: Plan, env: dict[str, str], work: Path, clock: Clock, out_dir: Path) -> Step:
    step = Step("pytest -m gpu")
    ids, collected = collect_gpu_tests(env, max(10.0, min(120.0, clock.left(plan.margin_s + KILL_GRACE_S))))
    if not ids:
        step.status, step.detail = "failed", "no test marked gpu was collected"
        (out_dir / PYTEST_TXT).write_text(f"# pytest -m gpu: nothing collected\n\n{collected[-5000:]}\n")
        return step
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rA", "-m", "gpu"]
    command += ["--continue-on-collection-errors", "--basetemp", str(work / "pytest"), *pytest_order(ids)]
    log = work / "logs" / "pytest.log"
    run_step(step, command, env, log, clock.left(plan.margin_s + KILL_GRACE_S))
    output = Path(log).read_text(errors="replace") if log.exists() else ""
    results = pytest_results(output)
    for test_id in ids:
        results.setdefault(test_id, "NOT RUN")
    counts = {s: sum(1 for v in results.values() if v == s) for s in dict.fromkeys(results.values())}
    if step.status == "failed" and not any(s in counts for s in ("FAILED", "ERROR")):
        step.detail = f"pytest exit code {step.returncode}"
    step.detail = "; ".join(x for x in (", ".join(f"{n} {s.lower()}" for s, n in counts.items()), step.detail) if x)
    write_pytest_txt(out_dir / PYTEST_TXT, plan, step, command, len(ids), results, output)
    step.log = str(log)
    return step


def write_pytest_txt(
    path: Path, plan: Plan, step: Step, command: list[str], n_ids: int, results: dict[str, str], output: str
) -> None:
    """Each test's outcome, then pytest's failures and summary (the part of its output that says why)."""
    lines = [
        f"# pytest -m gpu ({'DRY RUN on CPU: every gpu test is skipped here' if plan.dry else plan.device})",
        f"command: {' '.join(command[:9])} ... ({n_ids} test ids, max-autotune last)",
        f"status: {step.status}; exit code {step.returncode}; {step.seconds} s of {step.budget_s} s; {step.detail}",
        "",
        *[f"{status:8} {test_id}" for test_id, status in results.items()],
        "",
    ]
    marker = output.find("= FAILURES =")
    marker = marker if marker >= 0 else output.find("short test summary info")
    body = output[output.rfind("\n", 0, marker) + 1 :] if marker >= 0 else output[-20000:]
    path.write_text("\n".join(lines) + "\n" + body[-200_000:] + "\n")
