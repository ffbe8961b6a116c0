"""Reports of a sweep from crafted rows: pareto.png, explanations.md, TensorBoard scalars, the W&B offline run."""

from __future__ import annotations

import json

import pytest
from optbench_testing import report_rows as rows_for

from bench.report import write_reports

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def rows():
    failed = {
        "variant": "ptq(ort)",
        "recipe": "ptq(ort)",
        "device": "cpu",
        "scenario": "*",
        "status": "failed",
        "error": "RuntimeError: unsupported op Foo",
    }
    return (
        rows_for("fp32", 10.0, 95.0, 200.0)
        + rows_for("fp32-cl", 6.0, 95.0, 300.0)
        + rows_for("bf16", 40.0, 94.9, 50.0)
        + rows_for("int8-bad", 3.0, 80.0, 900.0)
        + [failed]
    )


def conf(tmp_path, **extra):
    from optbench_testing import tiny_config

    return tiny_config(tmp_path / "ckpt.pt", ["fp32", "fp32-cl", "bf16"], run_id="r1", **extra)


def test_reports_plot_explanations_and_tensorboard(tmp_path, rows, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = write_reports(tmp_path, rows, conf(tmp_path))
    assert out.answer.startswith("fastest within 1-point top-1 budget on cpu: fp32-cl")
    png = tmp_path / "pareto.png"
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    text = (tmp_path / "explanations.md").read_text()
    assert "**ptq(ort)** (cpu): failed: RuntimeError: unsupported op Foo" in text
    assert "**bf16** (cpu): Slower than fp32 (0.25x fp32 speed at batch 1" in text
    assert "no native BF16" in text  # the CPU flags explain it
    assert "**int8-bad** (cpu): Over the top-1 budget: drop 15.00 > 1 points" in text
    assert "**fp32-cl**" not in text  # faster and within budget: nothing to explain
    assert "ptq(ort)" in out.table and "unsupported op Foo" in out.table  # printed under the leaderboard
    assert "wandb" not in out.files and not (tmp_path / "wandb").exists()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def sessions():
        out_dir = out.files["tensorboard"]
        return sorted(p for p in out_dir.iterdir() if p.is_dir())

    found = sessions()
    assert [p.name.split("-", 1)[1] for p in found] == ["fp32-cpu", "fp32-cl-cpu", "bf16-cpu", "int8-bad-cpu"]
    acc = EventAccumulator(str(found[1]))
    acc.Reload()
    assert {"hparam/p50_ms", "hparam/throughput_img_s", "hparam/top1", "hparam/speedup_vs_fp32"} <= set(
        acc.Tags()["scalars"]
    )
    assert acc.Scalars("hparam/p50_ms")[0].value == 6.0
    # A second report (a resumed sweep) rewrites the sessions instead of adding more.
    write_reports(tmp_path, rows, conf(tmp_path))
    assert len(sessions()) == 4


def test_wandb_offline_run_holds_the_table(tmp_path, rows, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # no key, no mode: --wandb must fall back to offline
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc with a key
    out = write_reports(tmp_path, rows, conf(tmp_path, wandb=True))
    run_dir = out.files["wandb"]
    assert run_dir.parent == tmp_path / "wandb"
    err = capsys.readouterr().err
    assert "W&B: offline run saved" in err and "wandb sync" in err
    tables = list(run_dir.glob("files/media/table/leaderboard_*.table.json"))
    assert tables, sorted(p.name for p in run_dir.rglob("*"))
    table = json.loads(tables[0].read_text())
    assert "variant" in table["columns"] and "p50_ms" in table["columns"]
    names = [row[table["columns"].index("variant")] for row in table["data"]]
    assert {"fp32", "fp32-cl", "bf16", "ptq(ort)"} <= set(names)
    assert list(run_dir.glob("files/media/images/pareto_*.png"))
    assert list(run_dir.glob("run-*.wandb"))
    # Self-contained: the artifact's files are in the run folder, not staged under ~/.local/share/wandb.
    for name in ("leaderboard.csv", "leaderboard.md", "explanations.md"):
        assert list(run_dir.rglob(name)) or list((tmp_path / "wandb").rglob(name)), name
    assert not (tmp_path / "home" / ".local" / "share" / "wandb").exists()
    assert list(run_dir.glob("files/media/table/latency_vs_top1_table_*.table.json"))
    history = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert b"wandb/scatter" in history and b"wandb/bar" in history  # the two interactive charts


def test_wandb_logs_only_when_asked(monkeypatch):
    from bench.report.wandb_run import wandb_requested

    monkeypatch.setenv("WANDB_MODE", "offline")  # as Dockerfile.cuda once set for the whole image
    assert not wandb_requested(False) and wandb_requested(True)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert not wandb_requested(True)


def _chromium() -> str:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)")


def test_leaderboard_page_fits_1280_px_in_a_real_browser(tmp_path, rows, monkeypatch):
    """Headless Chromium opens the page: the answer first, the plot embedded, nothing cut off at 1280 px."""
    import subprocess

    browser = _chromium()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rows = [dict(r) for r in rows]
    rows[0]["note"] = "a long note " * 20  # notes wrap instead of widening the table
    write_reports(tmp_path, rows, conf(tmp_path))
    page = tmp_path / "leaderboard.html"
    text = page.read_text()
    assert text.startswith("<!doctype html>") and '<meta charset="utf-8">' in text and "<title>" in text
    assert text.index('class="answer"') < text.index("<table") and "data:image/png;base64," in text
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1000",
    ]
    shot = tmp_path / "leaderboard-1280.png"  # the test's artifact: look at it when this fails
    subprocess.run([browser, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot from {browser}"
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-fits="true"' in dom.stdout, f"the page is wider than 1280 px; see {shot}"
