"""A new INT8 backend of ``ptq`` is one module with one registration: a backend defined here, loaded as a plug-in
(OPTBENCH_PLUGINS), reaches ``python -m optim list``, ``python -m optim.quantize --backend`` and its accuracy
fallbacks, the default sweep's recipe choice and ``--search``, without a line changed anywhere else.

The toy backend leaves the model as it is, except that its default calibration ``a`` zeroes the classifier (top-1
falls to chance), so only its fallback, ``calib=b``, meets an accuracy budget.
"""

from __future__ import annotations

import json
import sys

import pytest

TOY = """
import torch

from optim.args import Arg
from optim.artifact import Artifact
from optim.eager import eager_save_hook
from optim.ptq import PtqBackend, register_ptq_backend
from optim.registry import RUNTIME


def build(artifact, ctx, args):
    module = artifact.module.eval()
    if (args.get("calib") or "a") == "a":
        with torch.no_grad():
            module.get_classifier().weight.zero_()
    out = Artifact(kind=RUNTIME, module=module, steps=[*artifact.steps, {"config": dict(args), "toy": True}])
    out.save_hook = eager_save_hook(out, ctx.loaded.info)
    return out


register_ptq_backend(
    "toy",
    PtqBackend(
        build,
        "a test backend",
        calib_methods=("a", "b"),
        args=(Arg("knob", int, 3, "a toy option"),),
        keep=False,
        default_recipes={"cpu": ("ptq(toy)",)},
    ),
)
"""


@pytest.fixture
def toy(install_plugin, monkeypatch):
    """The toy backend as a plug-in of this process and of every command a test starts."""
    import optim.ptq
    from optim.registry import load_producers

    load_producers()
    monkeypatch.setattr(optim.ptq, "PTQ_BACKENDS", dict(optim.ptq.PTQ_BACKENDS))  # registered into a copy
    install_plugin("toy_backend", TOY, [])
    load_producers()
    yield
    sys.modules.pop("toy_backend", None)


def test_listed_with_its_options(toy, cli):
    everything = cli(["optim", "list"])
    assert everything.returncode == 0, everything.stderr
    assert "ptq[(x86|ort|tensorrt|ov|toy[" in everything.stdout and "ptq(toy)" in everything.stdout
    ptq = cli(["optim", "list", "ptq"])
    assert "  toy: a test backend" in ptq.stdout and "knob=N: a toy option (default 3)" in ptq.stdout
    assert "calib=a|b" in ptq.stdout
    quantize = cli(["optim.quantize", "--help"])
    assert "ptq: x86|ort|tensorrt|ov|toy" in " ".join(quantize.stdout.split())


def test_parsed_chosen_searched_and_given_fallbacks(toy):
    from bench.run.recipes_for_machine import choose_recipes
    from bench.run.search import propose
    from data.errors import InputError
    from optim.recipe import parse

    assert parse("ptq(toy,knob=5)").steps[0].args == {"backend": "toy", "knob": 5}
    with pytest.raises(InputError, match="unknown ptq argument 'keep'"):
        parse("ptq(toy,keep=ends)")
    _, choice = choose_recipes(None, "cpu", {"cpu_model": "x", "cpu_flags": ["avx2"]})
    assert "ptq(toy)" in choice["included"]
    assert parse("ptq(toy)").fallbacks() == [("ptq(toy,calib=b)", "calibration method b instead of a")]
    assert parse("ptq(toy)").calibrates() is True
    measured = {"fp32": (1.0, 0.0, 99.0), "ptq(toy)": (5.0, 0.0, 99.0), "ptq(toy,knob=1)": (4.0, 5.0, 94.0)}
    proposed = [recipe for recipe, _ in propose(measured, set(), 1.0)]
    assert "prune(0.3)+ptq(toy)" in proposed and not any(p.endswith("+ptq(toy,knob=1)") for p in proposed)
    assert "ptq(toy,knob=1,calib=b)" in proposed  # the over-budget variant's fallback, its own options kept


def test_quantize_falls_back_within_the_budget(toy, cli, tiny_ckpt, tmp_path):
    out = tmp_path / "toy"
    proc = cli(["optim.quantize", str(tiny_ckpt), "--backend", "toy", "--calib-size", "32", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trying ptq(toy,calib=b) (calibration method b instead of a)" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"] == "ptq(toy,calib=b)" and manifest["accuracy"]["within_budget"]
    assert manifest["fallback"]["tried"][0]["drop"] > 1 and manifest["calibration"]["images"] == 32
