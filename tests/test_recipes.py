"""Recipes over the whole registry: parse, chain, reject bad chains naming the step, list what exists."""

from __future__ import annotations

import pytest

from data.errors import InputError
from optim import parse
from optim.recipe import parse_list
from optim.registry import GRAPH, MODULE, ONNX, RUNTIME, default_recipes, get_step, list_steps, load_producers


def test_every_producer_registers_steps():
    steps = load_producers()
    for name in ("fp32", "prune", "compile", "trt"):
        assert name in steps
    for spec in steps.values():
        assert spec.accepts <= {MODULE, GRAPH, ONNX, RUNTIME} and spec.produces in {MODULE, GRAPH, ONNX, RUNTIME}
        assert spec.description and spec.usage


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_default_recipes_parse_and_are_unique(device):
    recipes = default_recipes(device)
    assert recipes and len(recipes) == len(set(recipes))
    for text in recipes:
        recipe = parse(text)
        assert str(recipe) == text  # the variant name is the recipe, exactly as the sweep lists it
        assert device in recipe.devices


def test_cpu_defaults_include_pruning_and_compile():
    cpu = default_recipes("cpu")
    assert {"prune(0.3)", "compile", "compile(bf16)"} <= set(cpu)
    assert not any(r.startswith("trt") or "+trt" in r for r in cpu)


def test_chain_keeps_steps_in_order_and_name():
    recipe = parse("prune(0.5, importance=taylor)+compile(bf16)")
    assert [s.name for s in recipe.steps] == ["prune", "compile"]
    assert recipe.steps[0].args["ratio"] == 0.5 and recipe.steps[0].args["importance"] == "taylor"
    assert str(recipe) == "prune(0.5,importance=taylor)+compile(bf16)"


def test_prune_then_ort_int8_chains_when_registered():
    if "ort-int8" not in load_producers():
        pytest.skip("ort-int8 is registered by optim.quantize, which is not present")
    recipe = parse("prune(0.5)+ort-int8")
    assert [s.name for s in recipe.steps] == ["prune", "ort-int8"]
    assert "prune(0.5)+ort-int8" in default_recipes("cpu")


@pytest.mark.parametrize(
    "text, step",
    [
        ("compile+prune(0.5)", "prune(0.5)"),  # compiled code is terminal: nothing can be pruned after it
        ("compile+compile(bf16)", "compile(bf16)"),
        ("trt(fp16)+fp32", "fp32"),
    ],
)
def test_impossible_chains_fail_at_parse_naming_the_step(text, step):
    with pytest.raises(InputError) as err:
        parse(text)
    message = str(err.value)
    assert f"step {step} cannot run after" in message and "runtime" in message


def test_unknown_step_lists_the_known_ones():
    with pytest.raises(InputError) as err:
        parse("prune(0.5)+warp-speed")
    message = str(err.value)
    assert "'warp-speed'" in message
    for known in ("prune", "compile", "trt", "fp32"):
        assert known in message


@pytest.mark.parametrize("text", ["", "   ", "prune((0.5)", "prune(0.5))", "prune(0.5,)"])
def test_malformed_recipes_fail_with_input_error(text):
    with pytest.raises(InputError):
        parse(text)


def test_parse_list_splits_outside_parentheses():
    recipes = parse_list("prune(0.5,steps=2),compile(max-autotune)", default_recipes("cpu"))
    assert [str(r) for r in recipes] == ["prune(0.5,steps=2)", "compile(max-autotune)"]
    assert [str(r) for r in parse_list("all", ["fp32", "compile"])] == ["fp32", "compile"]


def test_gpu_only_recipes_say_why_they_cannot_run_on_cpu():
    for spec in list_steps():
        if spec.devices == frozenset({"cuda"}):
            reason = parse(_example(spec.name)).unavailable_reason("cpu")
            assert reason and "cuda" in reason, spec.name


def _example(name: str) -> str:
    """A valid spelling of a step (some need an argument)."""
    spec = get_step(name)
    for candidate in (name, f"{name}(0.5)", f"{name}(x86)", f"{name}(fp16)"):
        try:
            spec.parse_args(() if candidate == name else (candidate[len(name) + 1 : -1],))
            return candidate
        except InputError:
            continue
    pytest.skip(f"no example spelling for {name}")


def test_optim_list_prints_every_step_and_default_recipes(cli_here):
    proc = cli_here(["optim", "list"])
    assert proc.returncode == 0, proc.stderr
    for usage in (
        "prune(RATIO",
        "compile[(default|max-autotune|reduce-overhead[,freezing|no-freezing][,bf16]",
        "trt[(",
    ):
        assert usage in proc.stdout
    assert "default recipes on cpu:" in proc.stdout and "prune(0.3)" in proc.stdout
    prune = cli_here(["optim", "list", "prune"]).stdout
    assert "  finetune=N: fine-tuning epochs on the train split (default 2)" in prune


def test_optim_list_ptq_prints_each_backend_and_its_options(cli_here):
    out = cli_here(["optim", "list", "ptq"]).stdout
    assert "backends (a bare ptq uses ort on cpu, tensorrt on cuda):" in out
    for line in (
        "  x86: ",
        "      wrapper=auto|cpp|python: ",
        "  ort: ",
        "      calib=minmax|entropy|percentile: ",
        "  ov: ",
    ):
        assert line in out, line
    assert "list ptq)" not in out  # it describes the backends, it does not point to itself


def test_every_step_describes_its_arguments():
    for spec in list_steps():
        for arg in spec.arg_list():
            assert arg.help, f"{spec.name}: {arg.name}"
        assert spec.usage.startswith(spec.name)


def test_callers_ask_the_parsed_recipe():
    assert parse("compile(bf16)").search_candidate() and not parse("compile").search_candidate()
    assert parse("ov(bf16)").search_candidate() and not parse("ov").search_candidate()
    assert parse("prune(0.5)+ort-int8").calibrates() is True and parse("qat(x86)").calibrates() == "QAT: ranges learned"
    assert parse("prune(0.5)").calibrates() is False and parse("prune(0.5)").fallbacks() == []
    assert parse("ptq(ov)").needs("cpu") == ("x86_avx2",) and parse("ptq").needs("cpu") == ()
    assert parse("ptq(x86)").reload_compiles("cpu") and not parse("ptq(ort)").reload_compiles("cpu")
