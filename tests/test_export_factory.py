"""A variant of the user's own model class (``--model user_models:build``) exports in every format of the sweep:
a ``torch.export`` program, ONNX and OpenVINO IR hold the graph, so the folder needs neither the user's code nor
optbench, and the check blocks ``user_models`` too. The data is an ImageFolder of JPEG and PNG files, whose val files
reach predict.py as they are."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
from optbench_testing import USER_CLASSES, image_folder, user_checkpoints
from test_export import sweep

from models.spec import LoadSpec

RUN_ID = "user"
RECIPES = ("fp32", "ptq(ort)", "ptq(ov)")


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """The user's folder (their model module, checkpoint and images) and a sweep run from it."""
    root = tmp_path_factory.mktemp("user")
    ckpt = user_checkpoints(root)["custom_head.ckpt"][0]
    images = image_folder(root / "images")
    load = LoadSpec(path=str(ckpt), model="user_models:build", model_kwargs={"num_classes": USER_CLASSES})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the factory is imported from the folder the command runs in, by every process
        mp.syspath_prepend(str(root))
        mp.setenv("PYTHONPATH", str(root))
        run_dir = sweep(load, root, RUN_ID, RECIPES, data_spec=str(images))
    return SimpleNamespace(root=root, run_dir=run_dir)


@pytest.mark.parametrize(
    "recipe,model_file", [("fp32", "model.pt2"), ("ptq(ort)", "model.onnx"), ("ptq(ov)", "model.xml")]
)
def test_a_user_model_class_exports_and_runs_without_its_code(
    user_run, recipe, model_file, run_in_process, monkeypatch
):
    from bench.export.cli import main

    monkeypatch.chdir(user_run.root)
    monkeypatch.syspath_prepend(str(user_run.root))
    args = [RUN_ID, "--variant", recipe, "--out", "out", "--force", "--check-python", sys.executable]
    code, out, err = run_in_process(main, [*args, "--results", "results"])
    assert code == 0, out + err
    assert "user_models blocked" in out and "9/9 val images (100.00%)" in out, out
    folder = user_run.root / "out"
    assert (folder / model_file).is_file()
    assert json.loads((folder / "labels.json").read_text()) == [f"class_{i}" for i in range(USER_CLASSES)]
    assert "user_models" not in (folder / "predict.py").read_text()
    assert "class folders of the run's data" in (folder / "MODEL_CARD.md").read_text()
