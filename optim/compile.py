"""``torch.compile`` variants: ``compile``, ``compile(max-autotune,bf16)``, ...; ``python -m optim.compile``.

Inductor *freezing* is on by default on CPU, where it is what makes compile pay off (:mod:`optim.backends.inductor`
says why), and off on CUDA; ``no-freezing`` turns it off.

Compile time is recorded apart from steady state: the build makes the first call (that is where Inductor
compiles) and writes ``compile_s`` into the manifest, with how many of Inductor's cache lookups hit. The Inductor
cache is optbench's own (:func:`optim.backends.inductor.shared_cache_dir`), shared by every run on this machine:
the kernels a sweep compiled are found again by the next sweep and by a process loading the saved variant, and
nothing lands in ``/tmp``. Compiled code cannot be saved: a saved variant holds the source weights (``model.pt``)
and this config, and loading compiles again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from data.errors import ArgumentParser, CheckpointError, InputError, run_cli
from models.machine import BF16_FLAGS
from optim.args import add_options, step_text, values_of
from optim.artifact import Artifact, BuildContext
from optim.backends.inductor import (
    MODES,
    CompileConfig,
    cache_counts,
    compile_runtime,
    first_call_seconds,
    shared_cache_dir,
)
from optim.registry import GRAPH, MODULE, REFERENCE, RUNTIME, Arg, register_step
from optim.variant import LOADERS, Variant, register_loader

if __name__ == "__main__":
    # `python -m optim.compile` runs this file as __main__; run the importable module so the step registers once.
    from optim.compile import main as _main

    run_cli(_main)

REBUILD_NOTE = "compiled code cannot be saved: loading rebuilds it from model.pt and this config (cache kept)"


COMPILE_ARGS = (
    Arg("mode", default="default", help="torch.compile mode", choices=MODES, positional=True),
    Arg("freezing", bool, help="Inductor freezing: weights folded in as constants (default: on for CPU)", flag=True),
    Arg("bf16", bool, False, "autocast to bfloat16", flag=True),
    Arg("fp16", bool, False, "autocast to float16", flag=True),
    Arg("cudnn_convs", bool, False, "max-autotune leaves convolutions to cuDNN/oneDNN, tunes the rest", flag=True),
)


def compile_hints(args: dict[str, Any], device: str, flags: set[str]) -> list[str]:
    """Why a compiled variant may be slower than eager FP32."""
    from optim.eager import FP16_CPU_HINT, bf16_hints

    hints = bf16_hints(device, flags) if args.get("bf16") else []
    if args.get("fp16") and device == "cpu":
        hints.append(FP16_CPU_HINT)
    hints.append(
        "torch.compile adds guard checks and launch overhead on every call; on a small model at batch 1 that can "
        "outweigh the fused kernels"
    )
    return hints


def bf16_note(device: str) -> str | None:
    """Why BF16 is likely slow here (no native BF16 math), or None where the hardware has it."""
    if device == "cuda":
        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            return "this GPU has no native BF16: autocast to BF16 is likely slower than FP32"
        return None
    from models.machine import cpu_info

    flags = set(cpu_info()["cpu_flags"])
    if flags & set(BF16_FLAGS):
        return None
    return "this CPU has no avx512_bf16/AMX: BF16 runs through conversions and is likely slower than FP32"


def fp16_note(device: str) -> str | None:
    """FP16 autocast is a GPU feature; on a CPU without AMX-FP16/avx512_fp16 it is emulated and slow."""
    if device == "cuda":
        return None
    from models.machine import cpu_info

    if set(cpu_info()["cpu_flags"]) & {"avx512_fp16", "amx_fp16"}:
        return None
    return "this CPU has no avx512_fp16/AMX-FP16: FP16 autocast is likely much slower than FP32"


def _save_hook(artifact: Artifact, ctx: BuildContext, cfg: CompileConfig, inner_hook, from_graph: bool):
    from models.checkpoint import save
    from models.pruned import with_pruned_layers

    info = ctx.loaded.info
    module = artifact.module

    def hook(directory: Path) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "kind": "compile",
            "config": asdict(cfg),
            "note": REBUILD_NOTE,
        }
        if from_graph:
            if inner_hook is None:
                raise InputError("the graph before compile has no way to be saved, so this variant cannot be")
            spec["inner"] = inner_hook(directory)
        else:
            save(directory / "model.pt", module, with_pruned_layers(info, module))
            spec.update(
                checkpoint="model.pt",
                channels_last=artifact.memory_format is torch.channels_last,
                half=artifact.input_dtype is torch.float16,
            )
        return spec

    return hook


@register_step(
    "compile",
    accepts=[MODULE, GRAPH],
    produces=RUNTIME,
    args=COMPILE_ARGS,
    check=lambda args: CompileConfig(**args).validate(),
    description="torch.compile (Inductor), static shapes; freezing on by default on CPU; bf16/fp16 = autocast",
    needs=lambda args, device: ("native_bf16",) if args.get("bf16") and device == "cpu" else (),
    slow_hints=lambda args, device, flags: compile_hints(args, device, flags),
    default_recipes={
        "cpu": ["compile", "compile(bf16)"],
        "cuda": [
            "compile",
            "compile(fp16)",
            "compile(reduce-overhead,fp16)",
            "compile(max-autotune,fp16,cudnn-convs)",
        ],
    },
    reload_compiles=True,
    search_candidate=lambda args: bool(args.get("bf16")),
    compresses=lambda args, device: bool(args.get("fp16") or (args.get("bf16") and device == "cuda")),
)
def compile_step(artifact: Artifact, ctx: BuildContext, **args: Any) -> Artifact:
    """Compile the module; the first call (where Inductor compiles) is made here and timed as ``compile_s``."""
    cfg = CompileConfig(**args).validate()
    if artifact.module is None:
        raise InputError("compile needs a module or graph from the step before it")
    notes = []
    if cfg.bf16 and (note := bf16_note(ctx.device)):
        notes.append(note)
    if cfg.fp16 and (note := fp16_note(ctx.device)):
        notes.append(note)
    if cfg.mode == "reduce-overhead" and ctx.device != "cuda":
        notes.append("reduce-overhead uses CUDA graphs; on CPU it behaves like default")
    if cfg.mode == "max-autotune" and ctx.device == "cpu":
        notes.append(
            "max-autotune on CPU tunes only matrix multiplies: expect long compiles and little gain on convnets"
        )
    cache_dir = shared_cache_dir()
    from_graph = artifact.kind == GRAPH
    predict, prepare, compiled = compile_runtime(
        artifact.module,
        ctx.device,
        cfg,
        cache_dir,
        artifact.memory_format,
        artifact.autocast_dtype,
        artifact.input_dtype,
    )
    try:
        with cache_counts() as lookups:
            compile_s = first_call_seconds(predict, prepare, ctx.example_input(1), ctx.device)
    except Exception as exc:  # an Inductor/dynamo failure: name it as this step's failure, keep the cause chained
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise RuntimeError(f"torch.compile failed for {ctx.loaded.info.arch} ({type(exc).__name__}: {first})") from exc
    entry = {
        "config": {**asdict(cfg), "freezing": cfg.resolved_freezing(ctx.device)},
        "compile_s": round(compile_s, 3),
        "compile_note": "compile_s is the first call at batch 1; a new batch size recompiles once during warm-up",
        "inductor_cache": str(cache_dir),
        "inductor_cache_lookups": lookups,
        "save": REBUILD_NOTE,
    }
    if notes:
        entry["notes"] = notes
    hook = _save_hook(artifact, ctx, cfg, artifact.save_hook, from_graph)
    return Artifact(
        kind=RUNTIME,
        module=compiled,
        predict=predict,
        prepare_input=prepare,
        memory_format=artifact.memory_format,
        autocast_dtype=cfg.autocast() or artifact.autocast_dtype,
        input_dtype=artifact.input_dtype,
        steps=[*artifact.steps, entry],
        files=dict(artifact.files),
        save_hook=hook,
    )


@register_loader("compile", compiles=True)
def load_compiled(directory: Path, manifest: dict[str, Any], device: str, base=None) -> Variant:
    """Rebuild a compiled variant: load the source weights (or the inner variant) and compile again."""
    from optim.variant import saved_checkpoint

    spec = manifest["load"]
    raw = dict(spec.get("config") or {})
    cfg = CompileConfig(
        mode=raw.get("mode", "default"),
        freezing=raw.get("freezing"),
        bf16=bool(raw.get("bf16")),
        fp16=bool(raw.get("fp16")),
        cudnn_convs=bool(raw.get("cudnn_convs")),
    )
    cache_dir = shared_cache_dir()
    if "inner" in spec:
        inner = spec["inner"]
        if inner.get("kind") not in LOADERS:
            raise CheckpointError(f"{directory}: cannot load the graph under compile (loader {inner.get('kind')!r})")
        under = LOADERS[inner["kind"]](directory, {**manifest, "load": inner}, device, base)
        module = under.artifact.module if under.artifact is not None and under.artifact.module is not None else None
        target = module if module is not None else under.predict
        predict, prepare, _ = compile_runtime(target, device, cfg, cache_dir)
        if module is None:
            prepare = under.prepare_input
    else:
        loaded = saved_checkpoint(directory, manifest, base)
        module = loaded.model.half() if spec.get("half") else loaded.model
        predict, prepare, _ = compile_runtime(
            module,
            device,
            cfg,
            cache_dir,
            memory_format=torch.channels_last if spec.get("channels_last") else None,
            input_dtype=torch.float16 if spec.get("half") else None,
        )
    return Variant(manifest["name"], manifest["recipe"], device, predict, manifest, prepare)


def build_parser() -> ArgumentParser:
    from optim.cli import add_producer_arguments

    p = ArgumentParser(prog="python -m optim.compile", description="torch.compile a checkpoint (Inductor).")
    add_producer_arguments(p, data=False, calib=False)
    add_options(p, COMPILE_ARGS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from optim.cli import producer_run, quick_check, quick_check_line
    from optim.variant import build

    args = build_parser().parse_args(argv)
    cfg = CompileConfig(**values_of(args, COMPILE_ARGS)).validate()
    recipe = step_text("compile", COMPILE_ARGS, asdict(cfg))
    run = producer_run(args, recipe)
    loaded, out, device = run.loaded, run.out, run.config.device
    ctx = run.context(out)
    variant = build(recipe, loaded, ctx)
    reference = build(REFERENCE, loaded, run.context(out / "_fp32"))
    entry = variant.manifest["steps"][-1]
    x = ctx.example_input(1)
    with torch.inference_mode():
        diff = (variant(x) - reference(x)).abs().max().item()
    check = quick_check(reference, variant, x)
    variant.manifest["check"] = {"max_abs_diff_vs_eager": diff, **check}
    variant.save(out)
    import shutil

    shutil.rmtree(out / "_fp32", ignore_errors=True)
    freezing = entry["config"]["freezing"]
    print(f"{recipe}: {loaded.info.arch} on {device}, freezing={freezing}, bf16={cfg.bf16}, fp16={cfg.fp16}")
    print(f"  compile (first call) {entry['compile_s']:.1f}s; Inductor cache {entry['inductor_cache']}")
    print(quick_check_line(check, run.config.threads))
    print(f"  max |logit diff| vs eager FP32: {diff:.2e}")
    for note in entry.get("notes", []):
        print(f"  note: {note}")
    print(f"saved {out} ({REBUILD_NOTE})")
    return 0
