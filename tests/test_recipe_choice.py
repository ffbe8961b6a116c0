"""The default sweep is chosen from the machine's fingerprint (fake fingerprints here, no measurement)."""

from __future__ import annotations

from bench.run.recipes_for_machine import choose_recipes

AMD_AVX2 = {"cpu_model": "AMD EPYC 7B13", "cpu_flags": ["avx2"]}
INTEL_AMX = {
    "cpu_model": "Intel(R) Xeon(R) Platinum 8481C",
    "cpu_flags": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"],
}
INTEL_AVX2 = {"cpu_model": "Intel(R) Core(TM) i7-8700", "cpu_flags": ["avx2"]}


def test_avx2_amd_leaves_out_emulated_bf16_with_reasons_and_measures_openvino_int8():
    recipes, choice = choose_recipes(None, "cpu", AMD_AVX2)
    skipped = choice["skipped"]
    assert set(skipped) == {"bf16", "compile(bf16)", "ov(bf16)"}
    assert all("no native BF16" in why for why in skipped.values())
    # OpenVINO INT8 measured level with or ahead of ORT on an AVX2-only AMD Zen 3 (results/cpu/README.md)
    assert {"fp32", "ort", "ptq(ort)", "ptq(x86)", "prune(0.5)+ort-int8", "ov", "ptq(ov)"} <= set(choice["included"])
    assert "prune(0.5)+ov-int8" in choice["included"]
    assert recipes[0] == "fp32" and set(skipped) <= set(recipes)  # skipped recipes still get a row saying why


def test_a_cpu_without_avx2_leaves_out_openvino_and_bf16():
    _, choice = choose_recipes(None, "cpu", {"cpu_model": "aarch64", "cpu_flags": []})
    assert "AVX2" in choice["skipped"]["ov"] and "AVX2" in choice["skipped"]["prune(0.5)+ov-int8"]
    assert "no native BF16" in choice["skipped"]["bf16"]
    assert {"fp32", "ort", "ptq(ort)"} <= set(choice["included"])


def test_intel_with_amx_measures_bf16_and_openvino():
    _, choice = choose_recipes(None, "cpu", INTEL_AMX)
    assert not choice["skipped"]
    assert {"bf16", "compile(bf16)", "ov", "ov(bf16)", "ptq(ov)", "prune(0.5)+ov-int8"} <= set(choice["included"])


def test_intel_without_bf16_gets_openvino_but_not_bf16():
    _, choice = choose_recipes(None, "cpu", INTEL_AVX2)
    assert "ov" in choice["included"] and "ptq(ov)" in choice["included"]
    assert set(choice["skipped"]) == {"bf16", "compile(bf16)", "ov(bf16)"}


def test_all_and_explicit_recipes_ignore_the_machine():
    recipes, choice = choose_recipes("all", "cpu", AMD_AVX2)
    assert "bf16" in recipes and "ov" in recipes and not choice["skipped"]
    recipes, choice = choose_recipes("bf16,ov", "cpu", AMD_AVX2)
    assert recipes == ["fp32", "bf16", "ov"] and choice["mode"] == "explicit"
