"""``python -m bench --sweep-file grid.toml`` as a user types it in their own folder: what a file may not set, a
results folder the file names, a recipe added to a grid, and a changed grid that must say how to start new runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from optbench_testing import run_module


def _one_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _grid(folder: Path, extra: str = "", recipes: str = '"fp32"') -> Path:
    path = folder / "grid.toml"
    path.write_text(
        f'quick = true\nrecipes = [{recipes}]\nresults = "mine"\n{extra}\n[[checkpoint]]\npath = "model.pt"\n'
    )
    return path


def test_a_sweep_file_run_twice_with_its_own_results_folder(cli_here, tiny_ckpt, tmp_path):
    """The file's ``results`` folder holds its runs, so running the file again continues them (it looked in the
    default folder and refused the run as existing); a changed grid says how to start new runs in a sweep file."""
    shutil.copy(tiny_ckpt, tmp_path / "model.pt")
    _grid(tmp_path)
    first = run_module(["bench", "--sweep-file", "grid.toml", "--no-progress"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = (tmp_path / "mine" / "runs" / "grid-model.pt" / "results.jsonl").read_text()
    again = run_module(["bench", "--sweep-file", "grid.toml", "--no-progress"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "mine" / "runs" / "grid-model.pt" / "results.jsonl").read_text() == rows  # only reported
    _grid(tmp_path, recipes='"fp32", "fp32-cl"')  # a recipe added: measured in the same run, the rest kept
    added = run_module(["bench", "--sweep-file", "grid.toml", "--no-progress"], cwd=tmp_path)
    assert added.returncode == 0, added.stderr[-3000:]
    after = (tmp_path / "mine" / "runs" / "grid-model.pt" / "results.jsonl").read_text()
    assert after.startswith(rows) and '"variant": "fp32-cl"' in after[len(rows) :]
    assert "| fp32-cl " in (tmp_path / "mine" / "runs" / "grid-model.pt" / "leaderboard.md").read_text()
    _grid(tmp_path, extra="calib-size = 8", recipes='"fp32", "fp32-cl"')
    changed = cli_here(["bench", "--sweep-file", "grid.toml", "--no-progress"], cwd=tmp_path)
    line = _one_line(changed)
    assert "--calib-size would change what this run measured" in line and "name = ..." in line
    _grid(tmp_path, recipes='"fp32"')  # a recipe left out: its rows would stay in a run that no longer lists it
    assert "--recipes would change what this run measured" in _one_line(
        cli_here(["bench", "--sweep-file", "grid.toml", "--no-progress"], cwd=tmp_path)
    )


def test_what_a_sweep_file_cannot_set_is_one_line_before_anything_runs(cli_here, tiny_ckpt, tmp_path):
    shutil.copy(tiny_ckpt, tmp_path / "model.pt")
    for extra in ('resume = "old"', 'export = "deploy"', 'run-id = "x"'):
        _grid(tmp_path, extra)
        line = _one_line(cli_here(["bench", "--sweep-file", "grid.toml"], cwd=tmp_path))
        assert "cannot be set in a sweep file" in line, line
    _grid(tmp_path, "bogus-option = 3")  # the line names the file, the checkpoint and the option
    line = _one_line(cli_here(["bench", "--sweep-file", "grid.toml"], cwd=tmp_path))
    assert line.startswith("error: sweep file grid.toml, checkpoint") and "--bogus-option" in line, line
    _grid(tmp_path, 'no-progress = "yes"')
    line = _one_line(cli_here(["bench", "--sweep-file", "grid.toml"], cwd=tmp_path))
    assert "write a switch as a TOML boolean" in line, line
    assert not (tmp_path / "mine").exists()  # nothing was measured
    (tmp_path / "grids").mkdir()
    assert "is a folder" in _one_line(cli_here(["bench", "--sweep-file", "grids"], cwd=tmp_path))
