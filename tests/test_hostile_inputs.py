"""Hostile and broken inputs, as a hostile or careless user brings them: no code runs from a pickle, nothing is
written outside ``results/runs/``, no silent all-failed run, one line and exit 2 for bad input."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch


def _one_line(proc, code: int = 2) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr
    return lines[0]


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------- checkpoints that carry code


def test_a_reduce_to_os_system_becomes_a_placeholder(tmp_path, tiny_loaded):
    """Nested in Lightning's hyper_parameters beside real weights: the weights load, the payload is inert data."""
    import models

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save(
        {
            "state_dict": tiny_loaded.model.state_dict(),
            "hyper_parameters": {"model_name": "resnet10t", "x": _Exploit(marker)},
        },
        path,
    )
    loaded = models.load(path)
    assert not marker.exists()
    assert "posix.system" in loaded.info.placeholders or "nt.system" in loaded.info.placeholders
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), tiny_loaded.model(x))


@pytest.mark.parametrize("command", ["bench", "optim.quantize", "optim.prune", "bench.profile"])
def test_malicious_pickles_run_nothing_through_any_command(cli, tmp_path, command):
    marker = tmp_path / "pwned"
    plain = tmp_path / "evil.pt"
    torch.save(_Exploit(marker), plain)
    extra = ["--ratio", "0.5"] if command == "optim.prune" else []
    line = _one_line(cli([command, str(plain), *extra]))
    assert "without model weights" in line or "cannot be read" in line
    assert not marker.exists()


def test_a_text_file_named_pt_is_one_line(cli, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are my notes, not a checkpoint\n" * 10)
    assert "not a torch checkpoint" in _one_line(cli(["bench", str(path)]))


def test_a_legacy_non_zip_pickle_is_one_line_without_torch_s_warning(cli, tmp_path):
    """torch warns before refusing a legacy (non-zip) file; that warning must not become a second line."""
    marker = tmp_path / "pwned"
    path = tmp_path / "old.pt"
    torch.save({"weights": _Exploit(marker)}, path, _use_new_zipfile_serialization=False)
    line = _one_line(cli(["bench", str(path), "--model", "resnet10t"]))
    assert "without model weights" in line or "cannot be read" in line or "not a torch checkpoint" in line
    assert not marker.exists()


def test_build_on_a_foreign_object_is_refused(tmp_path):
    """BUILD may set state only on placeholders and plain containers: not on functions torch allows."""
    import pickle

    from models.safe_pickle import load_with_placeholders

    class Sneaky:
        def __reduce__(self):
            return (torch.Size, ((1,),), {"x": 1})  # BUILD on a torch.Size

    path = tmp_path / "sneaky.pt"
    torch.save({"w": torch.zeros(1), "s": Sneaky()}, path)
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        load_with_placeholders(path)


# ---------------------------------------------------------------- doctored variant directories


@pytest.fixture(scope="module")
def fp32_variant(tmp_path_factory, tiny_loaded):
    from optbench_testing import tiny_config

    from optim import build
    from optim.context import build_context

    out = tmp_path_factory.mktemp("variant")
    cfg = tiny_config(tiny_loaded.info.source, ["fp32"])
    build("fp32", tiny_loaded, build_context(cfg.build_settings(), tiny_loaded, out)).save(out)
    return out


def _copy_variant(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _record_sha(directory: Path, name: str) -> None:
    """What an attacker who edits the manifest too would do."""
    from optim.safe_artifacts import sha256_of

    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.setdefault("artifacts", {})[name] = {"sha256": sha256_of(directory / name)}
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_a_saved_variant_loads_and_runs_through_optim_show(cli_here, fp32_variant):
    proc = cli_here(["optim", "show", str(fp32_variant)])
    assert proc.returncode == 0, proc.stderr
    assert "fp32" in proc.stdout and "sha256 checked" in proc.stdout and "finite: True" in proc.stdout


def test_a_variant_folder_above_its_device_folder_points_to_it(cli_here, fp32_variant, tmp_path):
    """``optim show results/runs/ID/variants/ptq_ort_`` (the folder a user sees first): one line naming cpu/."""
    recipe_dir = tmp_path / "fp32"
    _copy_variant(fp32_variant, recipe_dir / "cpu")
    line = _one_line(cli_here(["optim", "show", str(recipe_dir)]))
    assert "no manifest.json" in line and str(recipe_dir / "cpu") in line


def test_a_swapped_checkpoint_in_a_variant_is_refused(cli_here, fp32_variant, tmp_path):
    marker = tmp_path / "pwned"
    doctored = _copy_variant(fp32_variant, tmp_path / "v")
    torch.save({"payload": _Exploit(marker)}, doctored / "model.pt")
    assert "does not match the sha256" in _one_line(cli_here(["optim", "show", str(doctored)]))
    _record_sha(doctored, "model.pt")
    assert "without model weights" in _one_line(cli_here(["optim", "show", str(doctored)]))
    assert not marker.exists()


def test_a_manifest_cannot_point_outside_its_directory(cli_here, fp32_variant, tmp_path):
    doctored = _copy_variant(fp32_variant, tmp_path / "v")
    manifest = json.loads((doctored / "manifest.json").read_text())
    manifest["load"]["checkpoint"] = "../../../etc/passwd"
    (doctored / "manifest.json").write_text(json.dumps(manifest))
    assert "not a plain file name" in _one_line(cli_here(["optim", "show", str(doctored)]))


def _pt2_variant(directory: Path) -> Path:
    """A small saved PT2E-style program (torch.export archive) with the manifest the pt2e-x86 loader reads."""
    from optim.backends.pt2e import save_graph

    directory.mkdir(parents=True)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 2)).eval()
    example = torch.randn(2, 3, 8, 8)
    save_graph(torch.export.export(module, (example,)).module(), example, directory / "model.pt2")
    manifest = {
        "name": "ptq(x86)",
        "recipe": "ptq(x86)",
        "device": "cpu",
        "data_config": {"input_size": [3, 8, 8]},
        "load": {"kind": "pt2e-x86", "file": "model.pt2", "input_size": [3, 8, 8], "wrapper": "python"},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    _record_sha(directory, "model.pt2")
    return directory


def _rewrite_archive(path: Path, edit) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    entries = edit(entries)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def test_a_pickle_inside_a_pt2_archive_runs_nothing(cli_here, tmp_path):
    """torch.export.load would unpickle a weight marked use_pickle with weights_only=False."""
    import io

    marker = tmp_path / "pwned"
    variant = _pt2_variant(tmp_path / "x86")
    buffer = io.BytesIO()
    torch.save(_Exploit(marker), buffer)

    def poison(entries):
        config_name = next(n for n in entries if n.endswith("weights_config.json"))
        config = json.loads(entries[config_name])
        first = next(iter(config["config"]))
        config["config"][first]["use_pickle"] = True
        target = next(n for n in entries if "/data/weights/" in n and not n.endswith(".json"))
        config["config"][first]["path_name"] = target.rsplit("/", 1)[1]
        entries[target] = buffer.getvalue()
        entries[config_name] = json.dumps(config).encode()
        return entries

    _rewrite_archive(variant / "model.pt2", poison)
    _record_sha(variant, "model.pt2")
    line = _one_line(cli_here(["optim", "show", str(variant)]))
    assert "tensors and operators only" in line
    assert not marker.exists()


def test_a_pt2_archive_calling_a_python_function_is_refused(cli_here, tmp_path):
    variant = _pt2_variant(tmp_path / "x86")

    def retarget(entries):
        for name, data in entries.items():
            if name.endswith(".json") and b"torch.ops.aten" in data:
                entries[name] = data.replace(b"torch.ops.aten.flatten.using_ints", b"torch.os.system", 1)
        return entries

    _rewrite_archive(variant / "model.pt2", retarget)
    _record_sha(variant, "model.pt2")
    assert "which is not an operator" in _one_line(cli_here(["optim", "show", str(variant)]))


def test_onnx_external_data_outside_the_directory_is_refused(cli_here, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    directory = tmp_path / "ort"
    directory.mkdir()
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("float_data")
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../../etc/passwd"
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "w"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1])],
        [weight],
    )
    onnx.save(helper.make_model(graph), str(directory / "model.onnx"))
    manifest = {"name": "ort", "recipe": "ort", "device": "cpu", "load": {"kind": "onnx", "file": "model.onnx"}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    _record_sha(directory, "model.onnx")
    assert "external ONNX data" in _one_line(cli_here(["optim", "show", str(directory)]))


# ---------------------------------------------------------------- run directories


def _bad_input_line(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("option", ["--run-id", "--resume"])
@pytest.mark.parametrize("value", ["../../escaped", "/tmp/abs", "a/b", ".."])
def test_run_ids_are_names_not_paths(run_in_process, tiny_ckpt, tmp_path, option, value):
    from bench.cli import main

    code, _, err = run_in_process(main, [tiny_ckpt, option, value, "--recipes", "fp32", "--quick"])
    assert "is not a run name" in _bad_input_line(code, err)
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.glob("results/*escaped*"))


@pytest.fixture(scope="module")
def finished_run(tiny_ckpt, tmp_path_factory):
    """A finished quick run ``k3`` (its own results folder)."""
    from optbench_testing import run_module

    results = tmp_path_factory.mktemp("finished")
    env = {"OPTBENCH_RESULTS": str(results)}
    proc = run_module(["bench", str(tiny_ckpt), "--recipes", "fp32", "--quick", "--run-id", "k3", "--no-progress"], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return results


def test_an_existing_run_id_is_not_reused_and_resume_refuses_changes(
    run_in_process, tiny_ckpt, finished_run, monkeypatch
):
    from bench.cli import main

    monkeypatch.setenv("OPTBENCH_RESULTS", str(finished_run))
    results = finished_run / "runs" / "k3" / "results.jsonl"
    before = results.read_text()
    code, _, err = run_in_process(
        main, [tiny_ckpt, "--recipes", "fp32", "--quick", "--run-id", "k3", "--img-size", "64"]
    )
    assert "already exists" in _bad_input_line(code, err) and "--resume k3" in err
    code, _, err = run_in_process(main, ["--resume", "k3", "--img-size", "64"])
    assert "--img-size would change what this run measured" in _bad_input_line(code, err)
    assert results.read_text() == before  # nothing already written is lost
    code, _, err = run_in_process(main, ["--resume", "k3", "--quick", "--no-progress"])  # repeating an option is fine
    assert code == 0, err[-2000:]
    assert results.read_text() == before  # a finished run resumed only reports again


def test_resume_refuses_a_checkpoint_whose_content_changed(run_in_process, finished_run, tmp_path, monkeypatch):
    """The same path holding another file since the run measured it (retrained, overwritten): resuming would mix
    two models in one leaderboard. Simulated by rows that recorded another sha256 than the file has now."""
    import json
    import shutil

    from bench.cli import main

    copy = tmp_path / "results"
    shutil.copytree(finished_run / "runs" / "k3", copy / "runs" / "k3")
    results = copy / "runs" / "k3" / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    results.write_text("".join(json.dumps({**r, "checkpoint_sha256": "ab" * 32}) + "\n" for r in rows))
    before = results.read_text()
    monkeypatch.setenv("OPTBENCH_RESULTS", str(copy))
    code, _, err = run_in_process(main, ["--resume", "k3", "--quick", "--no-progress"])
    line = _bad_input_line(code, err)
    assert "the checkpoint is not the one this run measured" in line and "abababababab in its rows" in line
    assert results.read_text() == before


def test_a_run_resumed_with_another_timeout_says_so(run_in_process, finished_run, tmp_path, monkeypatch):
    """run_config.json shows the latest start; the rows measured before ran with the earlier settings, so the
    change is kept in the configuration and said beside the answer, and changing only the budget is not flagged."""
    import json
    import shutil

    from bench.cli import main

    copy = tmp_path / "results"
    shutil.copytree(finished_run / "runs" / "k3", copy / "runs" / "k3")
    monkeypatch.setenv("OPTBENCH_RESULTS", str(copy))
    run = copy / "runs" / "k3"
    code, _, err = run_in_process(main, ["--resume", "k3", "--max-drop", "2", "--no-progress"])
    assert code == 0, err[-2000:]
    assert "resumed with other settings" not in (run / "explanations.md").read_text()
    code, _, err = run_in_process(main, ["--resume", "k3", "--timeout", "600", "--no-progress"])
    assert code == 0, err[-2000:]
    history = json.loads((run / "run_config.json").read_text())["resumed"]
    assert [item["changed"] for item in history] == [{"max_drop": [1.0, 2.0]}, {"timeout_s": [1800.0, 600.0]}]
    assert "timeout_s 1800.0 -> 600.0" in (run / "explanations.md").read_text()
    assert "resumed with other settings" in (run / "leaderboard.md").read_text()


def test_a_second_sweep_on_a_locked_run_directory_exits_2(run_in_process, finished_run, monkeypatch):
    from bench.cli import main
    from bench.run.run_dir import RunLock

    monkeypatch.setenv("OPTBENCH_RESULTS", str(finished_run))
    with RunLock(finished_run / "runs" / "k3", "k3"):
        code, _, err = run_in_process(main, ["--resume", "k3", "--no-progress"])
    assert f"being measured by process {os.getpid()}" in _bad_input_line(code, err)


def test_another_measurement_on_the_machine_is_warned_about(run_in_process, tiny_ckpt, tmp_path, monkeypatch):
    import bench.run.run_dir as run_dir
    from bench.cli import main

    monkeypatch.setenv("OPTBENCH_MACHINE_LOCK", str(tmp_path / "machine.lock"))
    holder = run_dir._machine_lock("someone-else")
    try:
        code, _, err = run_in_process(
            main, [tiny_ckpt, "--recipes", "fp32", "--quick", "--run-id", "w", "--no-progress"]
        )
    finally:
        holder.close()
    assert code == 0, err[-2000:]
    assert "another optbench measurement is running on this machine" in err and "someone-else" in err


FLAKY_STEP = """
import os
from optim.registry import MODULE, register_step

@register_step("flaky-step", accepts=[MODULE], produces=MODULE)
def flaky(artifact, ctx):
    if os.environ.get("FLAKY_FAILS"):
        raise RuntimeError("killed half-way in this test")
    from optim.eager import _mark
    return _mark(artifact, ctx)
"""


def test_resume_measures_failed_variants_again(run_in_process, tiny_ckpt, tmp_path, install_plugin, monkeypatch):
    from bench.cli import main

    install_plugin("flaky_steps", FLAKY_STEP, ["flaky-step"])
    monkeypatch.setenv("FLAKY_FAILS", "1")
    run = [tiny_ckpt, "--recipes", "fp32,flaky-step", "--quick", "--unpaired", "--run-id", "r", "--no-progress"]
    code, _, _ = run_in_process(main, run)
    assert code == 1  # the only variant failed
    code, _, _ = run_in_process(main, ["--resume", "r", "--no-retry-failed", "--no-progress"])
    results = tmp_path / "results" / "runs" / "r" / "results.jsonl"
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert [r["status"] for r in rows if r["recipe"] == "flaky-step"] == ["failed"] and code == 1
    monkeypatch.delenv("FLAKY_FAILS")
    code, _, err = run_in_process(main, ["--resume", "r", "--no-progress"])
    assert code == 0, err[-2000:]
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert {r["status"] for r in rows if r["recipe"] == "flaky-step"} == {"ok"}
    assert "killed half-way" in results.with_name("results.retried.jsonl").read_text()


# ---------------------------------------------------------------- broken images and options


@pytest.fixture
def broken_images(tmp_path):
    from optbench_testing import image_folder

    root = image_folder(tmp_path / "images", classes=10, per_class=2)
    good = next((root / "val" / "class_0").glob("*.jpg"))
    (root / "val" / "class_1" / "cut.jpg").write_bytes(good.read_bytes()[:200])
    (root / "val" / "class_2" / "empty.png").write_bytes(b"")
    return root


def test_broken_images_stop_the_sweep_before_it_starts(run_in_process, tiny_ckpt, broken_images):
    from bench.cli import main

    code, _, err = run_in_process(main, [tiny_ckpt, "--data", broken_images, "--recipes", "fp32", "--quick"])
    line = _bad_input_line(code, err)
    assert "2 unreadable image(s)" in line and "cut.jpg" in line and "empty.png" in line and "--skip-bad-images" in line


def test_skip_bad_images_leaves_them_out_and_says_so(run_in_process, tiny_ckpt, broken_images, tmp_path):
    from bench.cli import main

    run = [tiny_ckpt, "--data", broken_images, "--recipes", "fp32", "--quick", "--run-id", "s", "--skip-bad-images"]
    code, _, err = run_in_process(main, [*run, "--no-progress"])
    assert code == 0, err[-2000:]
    assert "2 unreadable image(s) left out" in err
    rows = [json.loads(x) for x in (tmp_path / "results" / "runs" / "s" / "results.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" and r["skipped_images"] == 2 for r in rows)
    assert "2 unreadable images were left out" in (tmp_path / "results" / "runs" / "s" / "leaderboard.md").read_text()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["", "--model", "resnet10t"], "CKPT is empty"),  # an unset "$CKPT" in a script: not random weights
        (["--resume", ""], "--resume is empty"),  # not a new default sweep
        (["--run-id", "", "--quick"], "--run-id is empty"),  # not an automatic name
    ],
)
def test_an_empty_argument_is_refused_not_read_as_absent(run_in_process, argv, needle, tmp_path):
    from bench.cli import main

    code, _, err = run_in_process(main, argv)
    assert needle in _bad_input_line(code, err)
    assert not (tmp_path / "results" / "runs").exists() or not any((tmp_path / "results" / "runs").iterdir())


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--recipes", ""], "--recipes is empty"),
        (["--recipes", "fp32,,ort"], "has an empty entry between commas"),
        (["--search-minutes", "5"], "--search-minutes applies to --search"),
        (["--list"], "--list shows every step"),
        (["--threads", "999"], "more than the"),
        (["--img-size", "7"], "cannot take this input size"),
        (["--data", "digits", "--data-dir", "."], "--data-dir is the root of timm dataset names"),
        (["--no-retry-failed"], "--no-retry-failed applies to --resume"),
        (["--search", "--search-minutes", "inf"], "--search-minutes must be a positive number of minutes"),
    ],
)
def test_options_that_should_not_pass(run_in_process, tiny_ckpt, args, needle):
    from bench.cli import main

    code, _, err = run_in_process(main, [tiny_ckpt, "--recipes", "fp32", "--quick", *args])
    assert needle in _bad_input_line(code, err)


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda b: b["benchmarks"][0]["stats"].update(data="12 ms"), "stats.data must be a non-empty list"),
        (lambda b: b["benchmarks"][0]["stats"].update(data=5), "stats.data must be a non-empty list"),
        (lambda b: b.update(machine_info="a laptop"), "machine_info must be a JSON object"),
        (lambda b: b["benchmarks"][0].update(extra_info="fast"), "extra_info must be a JSON object"),
    ],
    ids=["data-string", "data-number", "machine-info-string", "extra-info-string"],
)
def test_gate_refuses_misshapen_pytest_benchmark_json(cli, tmp_path, edit, needle):
    doc = {
        "machine_info": {"cpu": {"brand_raw": "x"}},
        "benchmarks": [
            {"name": "t", "extra_info": {"variant": "fp32", "scenario": "latency"}, "stats": {"data": [0.01] * 5}}
        ],
    }
    good = tmp_path / "base.json"
    good.write_text(json.dumps(doc))
    edit(doc)
    bad = tmp_path / "cand.json"
    bad.write_text(json.dumps(doc))
    assert needle in _one_line(cli(["bench.gate", str(good), str(bad), "--allow-machine-mismatch"]))


def test_a_users_own_models_and_data_packages_do_not_break_the_commands(tmp_path):
    """A project folder with its own models/ and data/ packages (a common layout): optbench's packages of the same
    names still load, and a factory inside the user's models/ gets one line saying to rename it."""
    from optbench_testing import run_module

    for name in ("models", "data"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    factory = "import timm\n\n\ndef build():\n    return timm.create_model('resnet10t')\n"
    (tmp_path / "models" / "net.py").write_text(factory)
    listed = run_module(["optim", "list"], cwd=tmp_path)
    assert listed.returncode == 0 and "ptq" in listed.stdout, listed.stderr[-2000:]
    proc = run_module(["bench", "--model", "models.net:build", "--random-init", "--quick"], cwd=tmp_path)
    assert proc.returncode == 2 and "rename your package" in proc.stderr and "Traceback" not in proc.stderr
