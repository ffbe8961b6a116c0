"""The serving scenario: the configuration search on synthetic instances whose service time is known, and the whole
stage through ``python -m bench --serve`` from the user's own folder."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time

import pytest

from bench.measure.serving_search import SearchSettings, ServeConfig, best_configuration, splits_for


def _sleeper(per_call_s: float, per_image_s: float):
    """A synthetic instance: a fixed cost per call plus one per image (sleeps: they hold their timing beside other
    work, and they release the GIL as a model call does)."""

    def call(n: int) -> None:
        time.sleep(per_call_s + per_image_s * n)

    return call


def _make(per_call_s: float, per_image_s: float):
    return lambda k, t: [_sleeper(per_call_s, per_image_s) for _ in range(k)]


def test_batching_raises_the_rate_a_fixed_overhead_allows():
    """3 ms a call + 0.3 ms an image, p99 within 40 ms: one image a call holds under 1/3.3 ms = 303 req/s; batches of
    8 under 8/5.4 ms = 1,481, of 16 under 2,051. The walk must find a batch above 1 whose claimed rate is well above
    batch 1's, each rate claimed by a full trial (at least 662 queries under the early-stopping rule). Calls of a few
    ms keep the harness's own scheduling delays (the suite runs two test files at a time on 2 cores) small beside
    them."""
    settings = SearchSettings(budget_s=50, per_config_s=12, min_duration_s=0.5, rel_tol=0.15)
    result = best_configuration(_make(0.003, 0.0003), [(1, 1)], 0.040, settings)
    seen = [(c.to_dict()["label"], c.search.best_rate, c.rate, c.search.stop_reason) for c in result.configs]
    best = result.best
    assert best is not None and best.config.max_batch > 1, seen
    single = next(c for c in result.configs if c.config.max_batch == 1)
    single_rate = single.search.best_rate  # its best VALID trial: batch 1's own budget may end before a re-measurement
    assert single_rate is not None and single_rate < 1.05 * 303, seen
    assert best.rate > 1.5 * single_rate, seen
    batch = best.config.max_batch
    assert best.rate < 1.05 * batch / (0.003 + 0.0003 * batch), seen  # never above what full batches could serve
    confirmation = best.search.confirmation
    assert confirmation.valid and confirmation.code == "valid" and confirmation.verdict["queries"] >= 662
    assert result.elapsed_s < 50 + 15, seen  # the budget, plus at most one search's last trial


def test_a_bound_no_configuration_meets_is_said_with_the_best_p99():
    """5 ms a call cannot answer within 2 ms at any rate: no rate is claimed and the closest p99 is reported."""
    settings = SearchSettings(budget_s=6, per_config_s=3, min_duration_s=0.2, rel_tol=0.2)
    result = best_configuration(_make(0.005, 0.0), [(1, 1)], 0.002, settings, batches=(1, 2))
    assert result.best is None
    closest = result.closest()
    assert closest is not None and closest["p99_ms"] > 2.0


def test_instances_slower_to_make_than_the_budget_leave_a_stopped_result_not_an_error():
    """Making a configuration's instances (their warm-up) can spend what was left of the budget after it was
    checked: that configuration is not searched with a negative budget (it raised, and failed the variant)."""

    def slow_make(k, t):
        time.sleep(0.3)
        return [_sleeper(0.001, 0.0) for _ in range(k)]

    settings = SearchSettings(budget_s=0.2, per_config_s=0.2, min_duration_s=0.1, rel_tol=0.2)
    result = best_configuration(slow_make, [(1, 1)], 0.05, settings, batches=(1, 2))
    assert result.best is None and result.configs == []
    assert result.stopped.startswith("budget spent before B=1")


def test_splits_cover_one_instance_and_one_per_thread():
    assert splits_for(1, "cpu") == [(1, 1)]
    assert splits_for(2, "cpu") == [(1, 2), (2, 1)]
    assert splits_for(8, "cpu") == [(1, 8), (2, 4), (8, 1)]
    assert ServeConfig(8, 0.002, 2, 1).label() == "B=8 D=2ms 2x1"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--serve", "--slo-ms", "0"], "--slo-ms must be"),
        (["--serve", "--slo-ms", "1e9"], "--slo-ms must be"),
        (["--serve", "--serve-top", "0"], "--serve-top must be at least 1"),
        (["--serve", "--serve-minutes", "-1"], "--serve-minutes must be"),
        (["--slo-ms", "15"], "add --serve"),
    ],
)
def test_serving_options_are_checked(run_in_process, tiny_ckpt, args, needle):
    from bench.cli import main

    code, _, err = run_in_process(main, [tiny_ckpt, "--recipes", "fp32", "--quick", *args])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def _idle_sensitive(busy_ms: float, idle_ms: float):
    """A call on a fake clock that takes ``idle_ms`` after a sleep and ``busy_ms`` right after another call."""
    now, rested = [0.0], [False]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        rested[0] = True

    def call() -> None:
        now[0] += (idle_ms if rested[0] else busy_ms) / 1e3
        rested[0] = False

    return call, sleep, lambda: now[0]


def test_an_isolated_request_is_timed_apart_from_back_to_back_calls_and_noted_when_slower():
    from bench.measure.idle_call import idle_cost
    from bench.scenarios.serve.process import result_row

    call, sleep, clock = _idle_sensitive(busy_ms=3.4, idle_ms=7.2)
    cost = idle_cost(call, sleep=sleep, clock=clock)
    assert cost["busy_p50_ms"] == pytest.approx(3.4) and cost["idle_p50_ms"] == pytest.approx(7.2)
    best = {"max_batch": 1, "max_delay_s": 0.0, "instances": 1, "threads": 2, "label": "B=1", "rate": 12.0}
    served = result_row("serve", {"bound_ms": 15.0, "best": {**best, "p99_ms": 14.0}, "idle_call": cost})
    assert served["serve_idle_p50_ms"] == pytest.approx(7.2) and served["serve_rate"] == 12.0
    assert "a request to an idle process took 7.2 ms (p50, after 100 ms idle) against 3.4 ms" in served["note"]
    none = result_row("serve", {"bound_ms": 5.0, "best": None, "closest": None, "idle_call": cost})
    assert none["note"].startswith("no serving configuration held p99 <= 5 ms; a request to an idle process")
    # A p99 under the bound that claimed nothing says why, so the note does not read as a contradiction.
    for full, why in ((True, "too close to it for the early-stopping rule"), (False, "in a screening trial")):
        near = {"p99_ms": 17.8, "rate": 100.4, "config": "B=1 D=0ms 1x2", "full": full}
        text = result_row("serve", {"bound_ms": 20.0, "best": None, "closest": near})["note"]
        assert (
            text.startswith("no serving configuration held p99 <= 20 ms; the best p99 reached was 17.8 ms")
            and why in text
        )
    over = {"p99_ms": 23.0, "rate": 24.8, "config": "B=1 D=0ms 1x2", "full": True}
    assert result_row("serve", {"bound_ms": 15.0, "best": None, "closest": over})["note"].endswith("(B=1 D=0ms 1x2)")
    call, sleep, clock = _idle_sensitive(busy_ms=3.4, idle_ms=3.6)  # within 25%: nothing to say
    steady = result_row(
        "serve",
        {"bound_ms": 15.0, "best": {**best, "p99_ms": 9.0}, "idle_call": idle_cost(call, sleep=sleep, clock=clock)},
    )
    assert "note" not in steady


@pytest.mark.slow
def test_serve_through_the_command_from_the_users_folder(cli, cli_here, tiny_ckpt, tmp_path):
    """python -m bench CKPT --recipes fp32,ptq(ort) --quick, then --resume with --serve (a user who asks the second
    question after the first answer), relative paths, from a folder of the user's: the sweep is not measured again,
    serving rows for both, their columns in the leaderboard, the curve, the answer's serving clause, and the exported
    service set up with the measured serving configuration."""
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(tiny_ckpt, work / "model.pt")
    first = ["bench", "model.pt", "--recipes", "fp32,ptq(ort)", "--quick", "--run-id", "s", "--results", "out"]
    proc = cli([*first, "--no-progress"], cwd=work, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "leaked semaphore" not in proc.stderr  # forked processes release what their data loaders made
    swept = (work / "out" / "runs" / "s" / "results.jsonl").read_text().splitlines()
    args = ["bench", "--resume", "s", "--results", "out", "--serve", "--serve-minutes", "0.5", "--export", "deploy"]
    (work / "taken").mkdir()
    (work / "taken" / "old-model.onnx").write_text("last week's model")
    proc = cli_here([*args[:-1], "taken"], cwd=work)  # an export folder in use: refused before measuring
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--export taken exists" in proc.stderr, proc.stderr
    assert (work / "taken" / "old-model.onnx").read_text() == "last week's model"
    proc = cli(args, cwd=work, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = work / "out" / "runs" / "s"
    lines = (run / "results.jsonl").read_text().splitlines()
    assert lines[: len(swept)] == swept  # the sweep's rows stand; nothing but the serving stage ran again
    rows = [json.loads(line) for line in lines]
    assert {r.get("scenario") for r in rows[len(swept) :]} == {"serve"}
    served = {r["recipe"]: r for r in rows if r.get("scenario") == "serve"}
    assert set(served) == {"fp32", "ptq(ort)"}, proc.stderr[-2000:]
    for row in served.values():
        assert row["status"] == "ok", row.get("error")
        assert row["serve_busy_p50_ms"] > 0 and row["serve_idle_p50_ms"] > 0  # an isolated call, timed too
        if row["serve_rate"] > 0:  # a rate is claimed only with its configuration and a p99 within the bound
            assert row["serve_p99_ms"] <= row["serve_slo_ms"]
            assert row["serve_best"]["max_batch"] >= 1 and row["serve_search"]["best"]["rate"] == row["serve_rate"]
        else:  # a bound nothing met says so, with the best p99 reached
            assert "no serving configuration held" in row["note"]
    assert served["ptq(ort)"]["serve_rate"] > 0, served["ptq(ort)"].get("note")
    with open(run / "leaderboard.csv") as f:
        board = {r["variant"]: r for r in csv.DictReader(f)}
    assert float(board["ptq(ort)"]["serve_rate"]) == pytest.approx(served["ptq(ort)"]["serve_rate"])
    assert float(board["fp32"]["serve_speedup_vs_fp32"]) == pytest.approx(1.0)
    assert served["fp32"]["serve_slo_ms"] == pytest.approx(float(f"{10 * float(board['fp32']['p50_ms']):.3g}"))
    assert (run / "serve_curve.png").stat().st_size > 10_000
    assert "serve curve" in (run / "leaderboard.html").read_text()
    answer = next(line for line in proc.stdout.splitlines() if line.startswith("fastest within"))
    assert "req/s at p99 <=" in answer and "threads)" in answer
    # The exported service starts with the serving configuration measured for the variant it hands over.
    handed = json.loads((work / "deploy" / "export.json").read_text())
    best = served[handed["recipe"]]["serve_best"]
    service = (work / "deploy" / "serve.py").read_text()
    assert f'MAX_BATCH = setting("MAX_BATCH", {int(best["max_batch"])}, int, 1)' in service
    assert f'INSTANCES = setting("INSTANCES", {int(best["instances"])}, int, 1)' in service
    # Another bound on the same run is a new run: one line, exit 2, before anything is measured.
    proc = cli_here(["bench", "--resume", "s", "--results", "out", "--serve", "--slo-ms", "3"], cwd=work)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "another bound (3 ms)" in proc.stderr, proc.stderr
    assert (run / "results.jsonl").read_text().splitlines() == lines


def test_a_resumed_run_serves_what_is_left_at_its_bound_and_refuses_another():
    """The stage's plan on a run's rows: variants already served at this bound are not measured again; rows at
    another bound make a different --slo-ms on --resume a new run, said in one line."""
    from bench.scenarios import get
    from bench.scenarios.serve.stage import plan

    def row(recipe: str, scenario: str, **extra) -> dict:
        return {"variant": recipe, "recipe": recipe, "device": "cpu", "status": "ok", "scenario": scenario, **extra}

    rows = [
        *[row(r, "latency", batch_size=1, p50_ms=p50, top1=99.0) for r, p50 in (("fp32", 4.0), ("ptq(ort)", 1.0))],
        *[row(r, "throughput", batch_size=16, throughput_img_s=t) for r, t in (("fp32", 300.0), ("ptq(ort)", 900.0))],
        row("fp32", "serve", serve_slo_ms=40.0, serve_rate=100.0),
    ]
    settings = {"top": 2, "minutes": 1.0, "slo_ms": None}
    cfg = get("serve").config(type("Args", (), {"serve": True, "slo_ms": None, "serve_top": 2,
                                                "serve_minutes": 1.0, "quick": False})(), "cpu")  # fmt: skip
    assert cfg is not None and {k: cfg.options[k] for k in settings} == settings
    left = plan(cfg, rows, "cpu", "fp32")  # default bound: 10 x fp32's 4 ms = the 40 ms it was served at
    assert left.recipes == ["ptq(ort)"] and left.done == ["fp32"] and left.config.options["slo_ms"] == 40.0
    other = dataclasses.replace(cfg, options={**cfg.options, "slo_ms": 15.0})
    with pytest.raises(ValueError, match=r"served at p99 <= 40 ms; another bound \(15 ms\) is a new run"):
        plan(other, rows, "cpu", "fp32")


@pytest.mark.parametrize("kind, sizes", [("pt2e-x86", [1, 2, 4, 8, 16]), ("onnx", list(range(1, 17)))])
def test_a_compiled_variant_serves_short_batches_padded_to_a_power_of_two(kind, sizes):
    """A graph compiled per batch size gets five sizes, as its exported service pads them; other runtimes take any."""
    from types import SimpleNamespace

    from bench.scenarios.serve.process import Instances, padded_size

    assert [padded_size(n, 16) for n in (1, 2, 3, 5, 8, 9, 16)] == [1, 2, 4, 8, 8, 16, 16]
    assert padded_size(3, 2) == 2 and padded_size(7, 6) == 6  # never past the largest batch
    seen: list[int] = []
    variant = SimpleNamespace(manifest={"load": {"kind": kind}}, prepare_input=lambda x: x,
                              predict=lambda x: seen.append(len(x)))  # fmt: skip
    prep = SimpleNamespace(job=SimpleNamespace(device="cpu", seed=0), info=SimpleNamespace(input_size=(3, 8, 8)))
    state = Instances(prep)
    state.max_batch = 16
    call = state._callable(variant)
    assert seen == sizes  # the warm-up: each size once, before any clock runs
    seen.clear()
    call(3), call(9), call(1)
    assert seen == ([4, 16, 1] if kind == "pt2e-x86" else [3, 9, 1])


def test_a_reference_that_held_nothing_is_said_once_not_left_as_blank_ratios():
    from bench.scenarios import get

    def row(variant: str, rate: float) -> dict:
        return {"variant": variant, "scenario": "serve", "status": "ok", "serve_rate": rate, "serve_slo_ms": 15.0}

    said = get("serve").caveats([row("fp32", 0.0), row("ptq(ov)", 12.4)])
    assert said == ["fp32 held no rate at p99 <= 15 ms, so the serving ratios to it are blank: the other variants' "
                    "req/s stand alone."]  # fmt: skip
    assert get("serve").caveats([row("fp32", 5.0), row("ptq(ov)", 12.4)]) == []
    assert get("serve").caveats([row("fp32", 0.0), row("ptq(ov)", 0.0)]) == []


def test_a_lower_bound_rate_and_a_thinner_reference_search_are_said():
    """A rate whose search never failed a trial is "at least" in the row, the answer and the caveats; a reference
    whose search ran out of time after fewer configurations than a variant's makes the serving ratios overstate."""
    from bench.scenarios import get
    from bench.scenarios.serve.process import result_row

    best = {"max_batch": 4, "max_delay_s": 0.002, "instances": 1, "threads": 2, "label": "B=4 D=2ms 1x2"}
    row = result_row("serve", {"bound_ms": 15.0, "best": {**best, "rate": 7216.1, "p99_ms": 3.0,
                                                          "rate_is_lower_bound": True}})  # fmt: skip
    assert row["serve_rate_lower_bound"] is True and row["serve_best"]["rate_is_lower_bound"] is True
    assert row["note"].startswith("serves at least 7,216 req/s")
    rec = {**row, "serve_rate": 7216.1}
    assert "; serves at least 7,216 req/s at p99 <= 15 ms" in get("serve").answer_text(rec, False)
    assert "at least" not in get("serve").answer_text({**rec, "serve_rate_lower_bound": False}, False)

    def served(variant: str, rate: float, configs: int, stopped: str = "") -> dict:
        search = {"configs": [{}] * configs, "stopped": stopped}
        return {"variant": variant, "scenario": "serve", "status": "ok", "serve_rate": rate, "serve_slo_ms": 15.0,
                "serve_search": search}  # fmt: skip

    thin = [served("fp32", 450.0, 1, "budget spent before B=1 D=0ms 2x1"), served("ptq(ort)", 7216.1, 3)]
    said = get("serve").caveats(thin)
    assert any("fp32's serving search ran out of time after 1 configuration(s)" in s for s in said), said
    even = [served("fp32", 450.0, 3, "budget spent before B=8 D=3.75ms 1x2"), served("ptq(ort)", 7216.1, 3)]
    assert get("serve").caveats(even) == []
