"""A backend whose package is not installed: one line naming the package and the extra that installs it, from the
producer commands (exit 2, nothing written) and as the reason of a skipped row in a sweep.

The package is made absent the way a user's environment has it absent: a folder first on PYTHONPATH whose
``onnxruntime`` raises ModuleNotFoundError on import, in the command's own process.
"""

from __future__ import annotations

import json
import shutil

import pytest

MISSING = "onnxruntime is not installed (pip install -e '.[cpu]')"


@pytest.fixture
def user_folder(tmp_path, tiny_ckpt):
    """(the user's folder holding their checkpoint, the environment without onnxruntime)."""
    fake = tmp_path / "site" / "onnxruntime"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'onnxruntime'\", name='onnxruntime')\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(tiny_ckpt, work / "tiny.pt")
    return work, {"PYTHONPATH": str(tmp_path / "site")}


@pytest.mark.parametrize(
    "command, step",
    [(["optim.quantize", "tiny.pt", "--backend", "ort"], "ptq(ort)"), (["optim.onnx", "tiny.pt"], "ort")],
)
def test_producer_commands_name_the_package_and_the_extra(cli, user_folder, command, step):
    work, env = user_folder
    proc = cli([*command, "--out", "variant"], env=env, cwd=work)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [f"error: step {step}: {MISSING}"]
    assert not (work / "variant").exists()


def test_a_sweep_skips_the_recipe_and_says_what_to_install(cli, user_folder, tmp_path):
    work, env = user_folder
    run = ["bench", "tiny.pt", "--recipes", "ort,fp32-cl", "--quick", "--run-id", "noort", "--no-progress"]
    proc = cli(run, env=env, cwd=work)
    rows = (tmp_path / "results" / "runs" / "noort" / "results.jsonl").read_text().splitlines()
    ort = [json.loads(line) for line in rows if json.loads(line)["recipe"] == "ort"]
    assert ort and all(r["status"] == "skipped" and r["reason"] == f"step ort: {MISSING}" for r in ort), ort
    assert proc.returncode == 0, proc.stderr[-3000:]  # fp32-cl was measured: the run did its job
