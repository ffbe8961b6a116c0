"""Reports of a sweep from crafted rows: pareto.png, explanations.md, TensorBoard scalars, the W&B offline run."""

from __future__ import annotations

import json

import pytest

from bench.report import write_reports

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FP = {"cpu_model": "Test CPU", "cpu_flags": ["avx2"], "threads": 2, "versions": {"torch": "x"}}


def rows_for(variant: str, p50: float, top1: float, thr: float, cov: float = 0.02) -> list[dict]:
    common = {
        "variant": variant,
        "recipe": variant,
        "device": "cpu",
        "status": "ok",
        "top1": top1,
        "top5": 100.0,
        "size_mb": 5.0,
        "build_s": 0.1,
        "img_size": 32,
        "fingerprint": FP,
        "quick": False,
    }
    return [
        {**common, "scenario": "latency", "batch_size": 1, "p50_ms": p50, "p90_ms": p50, "p99_ms": p50, "cov": cov},
        {**common, "scenario": "throughput", "batch_size": 16, "throughput_img_s": thr},
    ]


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
    return {"run_id": "r1", "device": "cpu", "max_drop": 1.0, "recipes": ["fp32", "fp32-cl", "bf16"], **extra}


def test_reports_plot_explanations_and_tensorboard(tmp_path, rows, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = write_reports(tmp_path, rows, conf(tmp_path), wandb_enabled=False)
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
    assert "wandb" not in out.trackers and not (tmp_path / "wandb").exists()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out.trackers["tensorboard"]))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"latency_p50_ms", "throughput_img_s", "top1", "speedup_vs_fp32"} <= set(tags)
    steps = {e.step: e.value for e in acc.Scalars("latency_p50_ms")}
    assert steps[0] == 10.0 and steps[1] == 6.0  # one step per variant, in sweep order
    # A second report (a resumed sweep) rewrites the scalars instead of duplicating steps.
    write_reports(tmp_path, rows, conf(tmp_path), wandb_enabled=False)
    acc = EventAccumulator(str(out.trackers["tensorboard"]))
    acc.Reload()
    assert len(acc.Scalars("latency_p50_ms")) == 4


def test_wandb_offline_run_holds_the_table(tmp_path, rows, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # no key, no mode: --wandb must fall back to offline
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc with a key
    out = write_reports(tmp_path, rows, conf(tmp_path), wandb_enabled=True)
    info = out.trackers["wandb"]
    assert info["mode"] == "offline"
    run_dir = info["dir"]
    assert run_dir.parent == tmp_path / "wandb"
    assert "wandb sync" in capsys.readouterr().err
    tables = list(run_dir.glob("files/media/table/leaderboard_*.table.json"))
    assert tables, sorted(p.name for p in run_dir.rglob("*"))
    table = json.loads(tables[0].read_text())
    assert "variant" in table["columns"] and "latency_p50_ms" in table["columns"]
    names = [row[table["columns"].index("variant")] for row in table["data"]]
    assert {"fp32", "fp32-cl", "bf16", "ptq(ort)"} <= set(names)
    assert list(run_dir.glob("files/media/images/pareto_*.png"))
    assert list(run_dir.glob("run-*.wandb"))
