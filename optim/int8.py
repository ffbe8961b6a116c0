"""What the INT8 producers share: the calibration batches, layers kept in FP32 (``keep=``), the PT2E x86 runtime
and its loader, and why an INT8 variant may not pay off on a CPU.

A step's arguments say everything needed to rebuild it exactly (calibration method, layers kept in FP32), which is
how the accuracy fallbacks of the producer commands become ordinary, reproducible recipes (``ptq(ort,keep=ends)``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.errors import InputError
from models.machine import VNNI_FLAGS
from optim.artifact import Artifact, BuildContext
from optim.registry import RUNTIME
from optim.variant import Variant, register_loader

SENSITIVITY_IMAGES = 64
PT2E_FILE = "model.pt2"


def eager_module(artifact: Artifact, step: str) -> nn.Module:
    if artifact.module is None:
        raise InputError(f"{step} needs an eager module")
    return artifact.module.float().cpu().eval()


def calib_batches(ctx: BuildContext) -> list[torch.Tensor]:
    """The calibration split (a seeded subset of train, never val) as CPU batches."""
    batches = [images for images, _ in ctx.data.calib]
    if not batches:
        raise InputError("the calibration split is empty")
    return batches


def parse_keep(value: str) -> str:
    """``ends`` (first conv + classifier), ``N`` (N most sensitive layers) or ``ends+N``."""
    parts = value.split("+")
    ok = all(p == "ends" or (p.isdigit() and int(p) > 0) for p in parts) and len(parts) <= 2
    if not ok or (len(parts) == 2 and parts[0] != "ends"):
        raise InputError(f"keep must be ends, a positive count of layers, or ends+N, got {value!r}")
    return value


def keep_plan(keep: str | None) -> tuple[bool, int]:
    """(keep the ends, how many most-sensitive layers) from a ``keep=`` value."""
    if not keep:
        return False, 0
    ends, count = False, 0
    for part in keep.split("+"):
        if part == "ends":
            ends = True
        else:
            count = int(part)
    return ends, count


def module_digest(module: nn.Module) -> str:
    """A cheap fingerprint of a module's weights: the key of caches shared by the candidates of one module."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()[:4096])
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(float(tensor.float().sum())).encode())
    return digest.hexdigest()[:16]


def sensitivity_ranking(module: nn.Module, ctx: BuildContext) -> list[dict[str, Any]]:
    """Per-layer INT8 sensitivity on calibration images, cached per module in ``ctx.options``."""
    from optim.backends.sensitivity import layer_sensitivity

    cache = ctx.options.setdefault("_sensitivity", {})
    key = module_digest(module)
    if key not in cache:
        images, seen = [], 0
        for batch in calib_batches(ctx):
            images.append(batch)
            seen += batch.shape[0]
            if seen >= SENSITIVITY_IMAGES:
                break
        cache[key] = layer_sensitivity(module, torch.cat(images)[:SENSITIVITY_IMAGES])
    return cache[key]


def keep_modules(module: nn.Module, ctx: BuildContext, keep: str | None) -> tuple[list[str], dict[str, Any]]:
    """Module names to leave in FP32 for ``keep``, and notes saying why each one."""
    from optim.backends.sensitivity import end_layers, most_sensitive

    ends, count = keep_plan(keep)
    names: list[str] = []
    notes: dict[str, Any] = {}
    if ends:
        names += end_layers(module)
        notes["kept_ends"] = list(names)
    if count:
        ranking = sensitivity_ranking(module, ctx)
        chosen = most_sensitive(ranking, count, exclude=names)
        names += chosen
        notes["kept_sensitive"] = [r for r in ranking if r["layer"] in chosen]
        notes["sensitivity"] = {
            "method": "one layer at a time simulated INT8 in eager; score = 1 - cosine of logits vs FP32",
            "images": SENSITIVITY_IMAGES,
            "top": ranking[:8],
        }
    return names, notes


def graph_predict(fn):
    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fn(x)

    return predict


def cpu_input(x: torch.Tensor) -> torch.Tensor:
    return x.detach().cpu().float().contiguous()


def saved_wrapper(spec: dict[str, Any]) -> str:
    """The wrapper a saved PT2E variant was measured with (variants saved before ``auto`` existed name theirs)."""
    from optim.backends.pt2e import WRAPPERS

    wrapper = str(spec.get("wrapper", "python"))
    return wrapper if wrapper in WRAPPERS else "python"


def x86_artifact(
    graph: nn.Module, ctx: BuildContext, steps: list[dict[str, Any]], notes: dict[str, Any], wrapper: str = "auto"
) -> Artifact:
    """A runtime artifact around a converted PT2E graph: compiled with freezing unless the caller defers it."""
    from optim.backends.pt2e import WRAPPERS, compile_frozen, save_graph

    c, h, w = ctx.loaded.info.input_size
    if ctx.options.get("defer_compile"):
        predict = graph_predict(graph)
        notes["compiled"] = False
    else:
        compiled, seconds = compile_frozen(graph, [(1, c, h, w)], wrapper)
        predict = graph_predict(compiled)
        how = "torch.compile + inductor freezing" + WRAPPERS[wrapper]
        notes.update({"compiled": True, "compile": how, "compile_s": round(seconds, 3)})

    def save_hook(directory: Path) -> dict[str, Any]:
        save_graph(graph, torch.randn(2, c, h, w), directory / PT2E_FILE)
        return {"kind": "pt2e-x86", "file": PT2E_FILE, "compile": True, "input_size": [c, h, w], "wrapper": wrapper}

    return Artifact(
        kind=RUNTIME, module=graph, predict=predict, prepare_input=cpu_input, steps=[*steps, notes], save_hook=save_hook
    )


@register_loader("pt2e-x86", compiles=True, standalone=True)
def load_pt2e_x86(directory: Path, manifest: dict[str, Any], device: str, base=None) -> Variant:
    """The saved quantized ExportedProgram (checked, tensors read weights-only), compiled again with freezing."""
    from optim.backends.pt2e import compile_frozen, load_graph
    from optim.safe_artifacts import artifact_file, check_recorded_digest

    if device != "cpu":
        raise InputError("a PT2E x86 variant runs on CPU only")
    spec = manifest["load"]
    path = artifact_file(directory, spec.get("file"), "program")
    check_recorded_digest(directory, manifest, path)
    graph = load_graph(path)
    c, h, w = spec.get("input_size") or manifest["data_config"]["input_size"]
    compiled, _ = compile_frozen(graph, [(1, c, h, w)], saved_wrapper(spec))
    return Variant(manifest["name"], manifest["recipe"], device, graph_predict(compiled), manifest, cpu_input)


def int8_slow_hints(device: str, flags: set[str]) -> list[str]:
    """Why any INT8 variant may not beat FP32 on this CPU (each backend adds its own reasons)."""
    if device != "cpu" or flags & set(VNNI_FLAGS):
        return []
    return [
        "this CPU has no VNNI/AMX INT8 dot-product instructions (avx512_vnni, avx_vnni, amx_int8): INT8 kernels "
        "gain little and quantize/dequantize steps cost time"
    ]
