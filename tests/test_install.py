"""optbench installed as a user installs it (``pip install .``, not editable) and run from the user's own folder:
nothing may read files from the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_sweep_runs_from_a_non_editable_install(tmp_path, tiny_ckpt):
    """The packages are built into a wheel and installed into a folder of their own; the sweep runs from another
    folder with relative paths, and every optbench module it imports comes from the installed copy."""
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(ROOT)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    assert (site / "bench" / "export" / "templates" / "predict.py").is_file()
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(tiny_ckpt, work / "model.pt")
    env = {**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "disabled"}
    env.pop("OPTBENCH_RESULTS", None)  # results go to the user's folder, as the README says
    where = subprocess.run(
        [sys.executable, "-c", "import bench, data, models, optim; print(bench.__file__, data.__file__, "
         "models.__file__, optim.__file__)"],
        capture_output=True, text=True, env=env, cwd=work,
    )  # fmt: skip
    assert where.returncode == 0 and all(p.startswith(str(site)) for p in where.stdout.split()), where.stdout
    args = ["-m", "bench", "model.pt", "--recipes", "fp32,ptq(ort)", "--quick", "--run-id", "i", "--no-progress"]
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=work, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (work / "results" / "runs" / "i" / "results.jsonl").read_text().splitlines()]
    ok = {r["recipe"] for r in rows if r.get("status") == "ok"}
    assert ok == {"fp32", "ptq(ort)"}, [r.get("error") for r in rows]
    assert all(r.get("top1", 100) > 90 for r in rows if r.get("scenario") == "latency")
    assert (work / "results" / "runs" / "i" / "leaderboard.html").is_file()
