"""Which recipes a plain ``python -m bench`` measures on this machine.

No single backend wins everywhere: on a CPU without native BF16 every BF16 recipe is emulated and slower than FP32,
while the INT8 backends (ONNX Runtime, OpenVINO) differ by model; on a CPU with AMX, BF16 and OpenVINO INT8 pay off.
So the default sweep is chosen from the machine's fingerprint: a recipe whose steps declare a capability this
machine lacks (native BF16, an x86-64 CPU with AVX2, ...: each step's ``needs``) is left out with a ``skipped`` row
that says why. ``--recipes all`` measures every default recipe whatever the machine, and
``--recipes R1,R2`` exactly what it names. The choice is printed and kept in the run configuration.
"""

from __future__ import annotations

from typing import Any

from data.errors import InputError
from models.machine import BF16_FLAGS

# capability -> (does this machine have it, why a recipe needing it is left out)
CAPABILITY_TEXT = {
    "native_bf16": "no native BF16 on this CPU (no avx512_bf16/amx_bf16): BF16 would be emulated, slower than FP32",
    "x86_avx2": "OpenVINO is measured by default on x86-64 CPUs with AVX2, where its INT8 kernels were measured",
}


def machine_capabilities(fp: dict[str, Any], device: str) -> set[str]:
    """The capabilities the fingerprint ``fp`` (``models.machine``) shows, for ``device``."""
    caps: set[str] = set()
    flags = set(fp.get("cpu_flags") or [])
    if device == "cuda" or flags & set(BF16_FLAGS):
        caps.add("native_bf16")
    if "avx2" in flags:
        caps.add("x86_avx2")
    return caps


def choose_recipes(text: str | None, device: str, fp: dict[str, Any] | None = None) -> tuple[list[str], dict[str, Any]]:
    """(recipes in the order measured, fp32 first; the choice: mode, machine, included and skipped with reasons)."""
    from bench.run.sweep import validate_recipes
    from optim.recipe import parse, parse_list
    from optim.registry import default_recipes

    if text is not None and not text.strip():
        raise InputError("--recipes is empty; name recipes (see --list) or leave the option out for the default")
    if fp is None:
        from models.machine import fingerprint

        fp = fingerprint(device)
    machine = f"{fp.get('cpu_model') or '?'} ({', '.join(fp.get('cpu_flags') or []) or 'no listed flags'})"
    if device == "cuda":
        machine = f"{fp.get('gpu_name') or 'CUDA device'} with {machine}"
    if text is not None and text.strip() != "all":
        recipes = validate_recipes([str(r) for r in parse_list(text, [])])
        return recipes, {"mode": "explicit", "machine": machine, "skipped": {}, "summary": ", ".join(recipes)}
    recipes = validate_recipes(default_recipes(device))
    if text is not None:
        return recipes, {"mode": "all", "machine": machine, "skipped": {}, "summary": "all: " + ", ".join(recipes)}
    caps = machine_capabilities(fp, device)
    skipped: dict[str, str] = {}
    for recipe in recipes:
        missing = [need for need in parse(recipe).needs(device) if need not in caps]
        if missing:
            skipped[recipe] = "; ".join(CAPABILITY_TEXT.get(m, f"needs {m}") for m in missing)
    kept = [r for r in recipes if r not in skipped]
    summary = f"chosen for {machine}: {', '.join(kept)}"
    if skipped:
        summary += f"; left out: {', '.join(skipped)} (--recipes all measures them)"
    return recipes, {"mode": "machine", "machine": machine, "included": kept, "skipped": skipped, "summary": summary}
