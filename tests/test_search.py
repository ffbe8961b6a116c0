"""``--search``: chains around the front runners, measured as ordinary rows, stopping by itself."""

from __future__ import annotations

import json
import math

from bench.run.search import front, propose


def test_front_keeps_only_undominated_variants():
    measured = {"fp32": (1.0, 0.0, 99.0), "a": (3.0, 0.5, 98.5), "b": (2.0, 0.5, 98.5), "c": (4.0, 2.0, 97.0)}
    assert front(measured) == ["a", "c", "fp32"]  # b is slower than a at the same drop
    assert front({"x": (2.0, math.nan, None), "y": (1.0, math.nan, None)}) == ["x"]  # speed only


def test_proposals_chain_pruning_in_front_of_the_fastest_int8_and_try_fallbacks():
    measured = {
        "fp32": (1.0, 0.0, 99.0),
        "ptq(ort)": (9.0, 0.1, 98.9),
        "ptq(x86)": (3.0, 0.2, 98.8),
        "compile": (1.5, 0.0, 99.0),
        "ptq(ov)": (12.0, 3.0, 96.0),  # over the 1-point budget: its fallbacks are proposed, not chains on it
    }
    proposed = [recipe for recipe, _ in propose(measured, set(), 1.0)]
    assert proposed[:3] == ["prune(0.3)+ptq(ort)", "prune(0.5)+ptq(ort)", "prune(0.7)+ptq(ort)"]
    assert "prune(0.3)+ptq(x86)" in proposed and not any("compile" in p for p in proposed)
    assert "ptq(ov,preset=mixed)" in proposed and not any(p.endswith("+ptq(ov)") for p in proposed)
    assert "prune(0.3)+ptq(ort)" not in [r for r, _ in propose(measured, {"prune(0.3)+ptq(ort)"}, 1.0)]


def test_search_adds_a_chain_to_the_leaderboard_and_stops(cli, tiny_ckpt, tmp_path):
    run = ["bench", str(tiny_ckpt), "--recipes", "fp32,dynamic", "--quick", "--run-id", "s", "--no-progress"]
    proc = cli([*run, "--search", "--search-minutes", "0.2"], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "search stopped:" in proc.stderr
    folder = tmp_path / "results" / "runs" / "s"
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    chains = {r["recipe"] for r in rows if r["recipe"].startswith("prune(") and r["status"] == "ok"}
    assert chains and all(c.endswith("+dynamic") for c in chains)
    assert any(c in (folder / "leaderboard.csv").read_text() for c in chains)
    log = [json.loads(line) for line in (folder / "search.jsonl").read_text().splitlines()]
    assert {e["recipe"] for e in log} >= chains and all(e["why"] and e["result"] for e in log)
    assert "Stopped:" in (folder / "search.md").read_text()
    config = json.loads((folder / "run_config.json").read_text())
    assert set(config["recipes"]) >= chains  # --resume knows what the search added
