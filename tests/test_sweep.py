"""The sweep: one process per variant; a variant that raises or kills its process becomes a failed row."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from optbench_testing import tiny_config

from bench.results_io import append_rows, read_rows
from bench.run.local import LocalExecutor
from bench.run.sweep import run_sweep, validate_recipes

PLUGIN = textwrap.dedent(
    """
    import os, signal
    from optim.registry import MODULE, register_step

    @register_step("raise-step", accepts=[MODULE], produces=MODULE)
    def raise_step(artifact, ctx):
        raise RuntimeError("boom: unsupported op in this test")

    @register_step("die-step", accepts=[MODULE], produces=MODULE)
    def die_step(artifact, ctx):
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.fixture
def crashy_plugin(install_plugin):
    install_plugin("crashy_steps", PLUGIN, ["raise-step", "die-step"])


def test_failures_become_rows_and_the_sweep_goes_on(tmp_path, tiny_ckpt, crashy_plugin):
    cfg = tiny_config(tiny_ckpt, validate_recipes(["raise-step", "die-step", "fp32-cl"]), paired=False)
    rows = run_sweep(cfg, tmp_path / "run", LocalExecutor(), progress=False)
    by_recipe = {}
    for row in rows:
        by_recipe.setdefault(row["recipe"], []).append(row)
    assert [r["status"] for r in by_recipe["raise-step"]] == ["failed"]
    assert "boom: unsupported op" in by_recipe["raise-step"][0]["error"]
    assert by_recipe["die-step"][0]["status"] == "failed"
    assert "SIGKILL" in by_recipe["die-step"][0]["error"]
    ok = by_recipe["fp32-cl"]
    assert {r["scenario"] for r in ok} == {"latency", "throughput"} and all(r["status"] == "ok" for r in ok)
    fp32 = by_recipe["fp32"][0]
    assert fp32["top1"] > 80 and fp32["agreement"] == 100.0  # the reference agrees with itself
    assert ok[0]["agreement"] > 95  # channels_last changes summation order only
    assert len(fp32["samples_ms"]) == fp32["n"] and fp32["p50_ms"] > 0
    assert fp32["fingerprint"]["threads"] == 1 and fp32["fingerprint"]["cpu_model"]
    assert (tmp_path / "run" / "variants" / "fp32" / "cpu" / "manifest.json").is_file()


def test_a_variant_that_fails_beside_another_leaves_the_other_measured(tmp_path, tiny_ckpt, crashy_plugin):
    # Two variants share the reference's rounds: raise-step fails while building, fp32-cl is still timed against
    # fp32, and die-step, alone in the next group, fails without taking the reference with it.
    cfg = tiny_config(tiny_ckpt, validate_recipes(["raise-step", "fp32-cl", "die-step"]), paired=True)
    rows = run_sweep(cfg, tmp_path / "run", LocalExecutor(), progress=False)
    status = {(r["recipe"], r.get("scenario")): r["status"] for r in rows}
    assert status[("raise-step", "*")] == status[("die-step", "*")] == "failed", status
    ok = [r for r in rows if r["recipe"] == "fp32-cl"]
    assert {r["status"] for r in ok} == {"ok"} and all(r["paired"]["rounds"] >= 5 for r in ok)
    assert all(r["pairing"]["timed_with"] == [] for r in ok)  # its partner never started
    assert {r["status"] for r in rows if r["recipe"] == "fp32"} == {"ok"}


def test_resume_skips_finished_recipes_without_duplicates(tmp_path, tiny_ckpt):
    cfg = tiny_config(tiny_ckpt, ["fp32", "fp32-cl"], paired=False)
    calls = []

    class CountingExecutor(LocalExecutor):
        def run(self, variants, reference, record_reference):
            calls.extend(job.recipe for job in variants)
            yield from super().run(variants, reference, record_reference)

    results = tmp_path / "run" / "results.jsonl"
    first = run_sweep(cfg.replace(recipes=("fp32",)), tmp_path / "run", CountingExecutor(), progress=False)
    assert {r["recipe"] for r in first} == {"fp32"}
    with open(results, "a") as fh:  # an interrupted write leaves a torn last line
        fh.write('{"recipe": "fp32-cl", "tor')
    rows = run_sweep(cfg, tmp_path / "run", CountingExecutor(), progress=False)
    assert calls == ["fp32", "fp32-cl"]
    keys = [(r["recipe"], r["scenario"]) for r in rows]
    assert len(keys) == len(set(keys)) == 4


def test_results_file_append_and_read(tmp_path):
    path = tmp_path / "r.jsonl"
    append_rows(path, [{"a": 1}])
    path.write_text(path.read_text() + "{broken")
    append_rows(path, [{"b": 2}])
    assert read_rows(path) == [{"a": 1}, {"b": 2}]
    assert json.loads(path.read_text().splitlines()[-1]) == {"b": 2}


def test_variant_saved_by_a_sweep_loads_back(tmp_path, tiny_loaded):
    from optim import Variant, build
    from optim.context import build_context

    ctx = build_context(tiny_config(tiny_loaded.info.source, ["fp32-cl"]).build_settings(), tiny_loaded, tmp_path / "v")
    variant = build("fp32-cl", tiny_loaded, ctx)
    variant.save(tmp_path / "v")
    again = Variant.load(tmp_path / "v")
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(variant(x), again(x), atol=1e-5)
    assert again.manifest["source"]["sha256"] == tiny_loaded.info.sha256


def test_a_failure_reason_keeps_no_terminal_colour_codes():
    """torch.onnx colours its step lines; in a leaderboard note they would read as '[96m'."""
    from bench.run.failures import failure_text

    exc = RuntimeError("\x1b[96mThis is step 1/3\x1b[0m of exporting\nsecond line")
    assert failure_text(exc) == "RuntimeError: This is step 1/3 of exporting"


def test_a_sweep_whose_every_other_variant_was_skipped_measured_nothing_asked_for():
    """--recipes fp32,trt(fp16) on a CPU machine: fp32 alone is no answer to the question asked (exit 1)."""
    from bench.run.sweep import sweep_verdict

    fp32 = {"recipe": "fp32", "device": "cpu", "status": "ok"}
    trt = {"recipe": "trt(fp16)", "device": "cpu", "status": "skipped", "reason": "needs a CUDA device"}
    code, why = sweep_verdict([fp32, trt], "cpu")
    assert code == 1 and "skipped here (trt(fp16): needs a CUDA device)" in why
    assert sweep_verdict([fp32], "cpu") == (0, None)  # fp32 alone, as asked
    assert sweep_verdict([fp32, trt, {**trt, "recipe": "ort", "status": "ok"}], "cpu") == (0, None)
