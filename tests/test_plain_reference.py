"""The plain scripts our recipes are compared with (bench.tools.plain_reference), run as a user runs them."""

from __future__ import annotations

import json


def test_plain_scripts_time_each_technique_and_say_which_failed(cli, tmp_path):
    args = ["bench.tools.plain_reference", "fp32", "ptq-ov", "ptq-ort", "--model", "resnet10t", "--img-size", "32"]
    proc = cli([*args, "--calls", "10", "--threads", "1"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["technique"] for r in rows] == ["fp32", "ptq-ov", "ptq-ort"]
    for row in rows:
        assert "error" not in row, row
        assert row["batch1_p50_ms"] > 0 and row["throughput_img_s"] > 0 and row["throughput_batch"] == 16


def test_an_unknown_technique_is_one_line_and_exit_2(cli, tmp_path):
    proc = cli(["bench.tools.plain_reference", "ptq-magic"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: unknown technique 'ptq-magic'; choose from: fp32, ptq-x86, compile-bf16, ptq-ov, ptq-ort"
    ]
