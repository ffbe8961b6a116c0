"""TensorRT engines through Torch-TensorRT (dynamo IR): ``trt(fp16)``, ``trt(int8)``; ``python -m optim.tensorrt``.

GPU only. ``torch_tensorrt.compile(model, ir="dynamo", inputs=[Input(min, opt, max)])`` builds engines for a
dynamic batch range, so one variant serves batch 1 (latency), the throughput batch and the accuracy pass.
INT8 is calibrated: Torch-TensorRT 2.x takes quantization from NVIDIA Model Optimizer
(``modelopt.torch.quantization.quantize(model, INT8_DEFAULT_CFG, forward_loop)``), which inserts calibrated
quantize/dequantize nodes that TensorRT turns into INT8 layers; calibration batches come from the train split.

Engines are cached per GPU and TensorRT version (``results/cache/tensorrt/<gpu>-trt<version>``): an engine
built for one GPU or TensorRT release is not valid on another. Torch-TensorRT pins one torch minor version
(torch-tensorrt 2.N needs torch 2.N); a mismatch is reported as a missing dependency, not a crash.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data.errors import ArgumentParser, CheckpointError, InputError, MissingDependencyError, run_cli
from optim.args import add_options
from optim.artifact import Artifact, BuildContext
from optim.registry import MODULE, RUNTIME, Arg, register_step
from optim.variant import Variant, module_runtime, register_loader

if __name__ == "__main__":
    # `python -m optim.tensorrt` runs this file as __main__; run the importable module so the step registers once.
    from optim.tensorrt import main as _main

    run_cli(_main)

PRECISIONS = ("fp16", "int8")
INSTALL_HINT = "install with pip install .[gpu] or use Dockerfile.cuda"
ENGINE_FILE = "model_trt.ep"
DEFAULT_MAX_BATCH = 128  # the CUDA throughput batch of the sweep
CALIB_BATCHES_QUICK = 4


@dataclass(frozen=True)
class TrtConfig:
    precision: str = "fp16"
    max_batch: int = DEFAULT_MAX_BATCH
    opt_batch: int = 32

    def validate(self) -> TrtConfig:
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown TensorRT precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        if self.max_batch < 1 or not 1 <= self.opt_batch <= self.max_batch:
            raise InputError(f"batch range must satisfy 1 <= opt ({self.opt_batch}) <= max ({self.max_batch})")
        return self


TRT_ARGS = (
    Arg("precision", default="fp16", help="engine precision (int8: calibrated)", choices=PRECISIONS, positional=True),
)


def engine_cache_key(gpu_name: str, trt_version: str) -> str:
    """Folder name for engines valid on one GPU model and TensorRT release, e.g. ``NVIDIA_H100-trt10.9.0``."""
    gpu = re.sub(r"[^A-Za-z0-9.]+", "_", gpu_name.strip()).strip("_") or "gpu"
    trt = re.sub(r"[^A-Za-z0-9.]+", "_", trt_version.strip()) or "unknown"
    return f"{gpu}-trt{trt}"


def engine_cache_dir(gpu_name: str, trt_version: str) -> Path:
    from data.paths import cache_dir

    return cache_dir() / "tensorrt" / engine_cache_key(gpu_name, trt_version)


def missing_reason(device: str, precision: str = "fp16") -> str | None:
    """Why ``trt`` cannot run here (no CUDA, no torch-tensorrt, no modelopt for int8), or None; imports nothing."""
    if device != "cuda":
        return "TensorRT runs only on CUDA devices"
    if not torch.cuda.is_available():
        return f"TensorRT needs a CUDA GPU and none is visible ({INSTALL_HINT})"
    if importlib.util.find_spec("torch_tensorrt") is None:
        return f"torch-tensorrt is not installed ({INSTALL_HINT})"
    if precision == "int8" and importlib.util.find_spec("modelopt") is None:
        return f"INT8 calibration needs NVIDIA Model Optimizer (nvidia-modelopt) ({INSTALL_HINT})"
    return None


def require_torch_tensorrt(precision: str = "fp16"):
    """Import torch_tensorrt or raise MissingDependencyError (exit 2) saying what is missing and how to get it."""
    reason = missing_reason("cuda", precision)
    if reason:
        raise MissingDependencyError(reason)
    import torch_tensorrt

    torch_minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    trt_minor = ".".join(torch_tensorrt.__version__.split("+")[0].split(".")[:2])
    if torch_minor != trt_minor:
        raise MissingDependencyError(
            f"torch-tensorrt {torch_tensorrt.__version__} is built for torch {trt_minor}, but torch is "
            f"{torch.__version__}; install matching versions ({INSTALL_HINT})"
        )
    return torch_tensorrt


def tensorrt_version() -> str:
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except ImportError:
        return "unknown"


def _calibrate_int8(model: torch.nn.Module, ctx: BuildContext) -> dict[str, Any]:
    """Insert calibrated INT8 quantize/dequantize nodes with Model Optimizer, using train-split batches."""
    import modelopt.torch.quantization as mtq

    loader = ctx.data.calib
    limit = CALIB_BATCHES_QUICK if ctx.quick else None
    seen = {"images": 0}

    def forward_loop(m: torch.nn.Module) -> None:
        with torch.no_grad():
            for index, (images, _targets) in enumerate(loader):
                if limit is not None and index >= limit:
                    break
                m(images.to("cuda"))
                seen["images"] += int(images.shape[0])

    mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop=forward_loop)
    return {"calibration": "modelopt INT8_DEFAULT_CFG (per-channel weights, per-tensor activations)", **seen}


def _export_mode():
    """modelopt's export mode makes its quantizers traceable by torch.export; absent for fp16 builds."""
    try:
        from modelopt.torch.quantization.utils import export_torch_mode
    except ImportError:
        return contextlib.nullcontext()
    return export_torch_mode()


def compile_engine(model: torch.nn.Module, input_size: Sequence[int], cfg: TrtConfig, cache_dir: Path, tt) -> Any:
    """``torch_tensorrt.compile`` with a dynamic batch range and the per-GPU engine cache."""
    c, h, w = input_size
    inputs = [
        tt.Input(
            min_shape=(1, c, h, w),
            opt_shape=(cfg.opt_batch, c, h, w),
            max_shape=(cfg.max_batch, c, h, w),
            dtype=torch.float32,
        )
    ]
    precisions = {torch.float16} if cfg.precision == "fp16" else {torch.int8, torch.float16}
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _export_mode():
        return tt.compile(
            model,
            ir="dynamo",
            inputs=inputs,
            enabled_precisions=precisions,
            min_block_size=1,
            cache_built_engines=True,
            reuse_cached_engines=True,
            engine_cache_dir=str(cache_dir),
        )


@register_step(
    "trt",
    accepts=[MODULE],
    produces=RUNTIME,
    args=TRT_ARGS,
    devices=["cuda"],
    description="Torch-TensorRT (dynamo IR) engine, dynamic batch; int8 calibrated with NVIDIA Model Optimizer",
    default_recipes={"cuda": ["trt(fp16)", "trt(int8)", "prune(0.5)+trt(fp16)"]},
    available=lambda args, device: missing_reason(device, args.get("precision", "fp16")),
    compresses=True,
)
def trt_step(artifact: Artifact, ctx: BuildContext, precision: str = "fp16") -> Artifact:
    """Build (or reuse from the cache) a TensorRT engine for the module."""
    if ctx.device != "cuda":
        raise MissingDependencyError(f"trt runs only on CUDA devices, not {ctx.device} ({INSTALL_HINT})")
    cfg = TrtConfig(precision=precision, max_batch=int(ctx.options.get("max_batch", DEFAULT_MAX_BATCH))).validate()
    tt = require_torch_tensorrt(cfg.precision)
    if artifact.module is None:
        raise InputError("trt needs an eager module")
    model = artifact.module.float().to("cuda").eval()
    gpu = torch.cuda.get_device_name()
    trt_version = tensorrt_version()
    cache_dir = engine_cache_dir(gpu, trt_version)
    entry: dict[str, Any] = {
        "config": {"precision": cfg.precision, "min_batch": 1, "opt_batch": cfg.opt_batch, "max_batch": cfg.max_batch},
        "gpu": gpu,
        "tensorrt": trt_version,
        "torch_tensorrt": tt.__version__,
        "engine_cache": str(cache_dir),
    }
    if cfg.precision == "int8":
        entry["int8"] = _calibrate_int8(model, ctx)
    start = time.perf_counter()
    engine = compile_engine(model, ctx.loaded.info.input_size, cfg, cache_dir, tt)
    torch.cuda.synchronize()
    entry["engine_build_s"] = round(time.perf_counter() - start, 3)
    predict, prepare = module_runtime(engine, "cuda")
    c, h, w = ctx.loaded.info.input_size
    example = torch.randn(1, c, h, w, device="cuda")

    def save_hook(directory: Path) -> dict[str, Any]:
        tt.save(engine, str(directory / ENGINE_FILE), output_format="exportedprogram", arg_inputs=[example])
        return {
            "kind": "tensorrt",
            "engine": ENGINE_FILE,
            "precision": cfg.precision,
            "gpu": gpu,
            "tensorrt": trt_version,
        }

    return Artifact(
        kind=RUNTIME,
        module=engine,
        predict=predict,
        prepare_input=prepare,
        steps=[*artifact.steps, entry],
        files=dict(artifact.files),
        save_hook=save_hook,
    )


@register_loader("tensorrt", standalone=True)
def load_tensorrt(directory: Path, manifest: dict[str, Any], device: str, base=None) -> Variant:
    """Load the serialized TensorRT program; it only runs on the GPU model and TensorRT version that built it."""
    spec = manifest["load"]
    if device != "cuda":
        raise MissingDependencyError(f"a TensorRT variant runs only on CUDA, not {device}")
    tt = require_torch_tensorrt(spec.get("precision", "fp16"))
    here_gpu, here_trt = torch.cuda.get_device_name(), tensorrt_version()
    if (spec.get("gpu"), spec.get("tensorrt")) != (here_gpu, here_trt):
        raise CheckpointError(
            f"{directory}: engine built on {spec.get('gpu')} with TensorRT {spec.get('tensorrt')}, this is {here_gpu} "
            f"with TensorRT {here_trt}; rebuild it (python -m optim.tensorrt)"
        )
    from optim.safe_artifacts import artifact_file, check_pt2, check_recorded_digest, weights_only_loads

    engine = artifact_file(directory, spec.get("engine"), "engine")
    check_recorded_digest(directory, manifest, engine)  # an engine is native code: only the one saved here
    if engine.suffix in (".ep", ".pt2"):
        check_pt2(engine, allow_torchbind=True)
    with weights_only_loads():
        program = tt.load(str(engine))
    module = program.module() if hasattr(program, "module") else program
    predict, prepare = module_runtime(module, "cuda")
    return Variant(manifest["name"], manifest["recipe"], device, predict, manifest, prepare)


def build_parser() -> ArgumentParser:
    from optim.cli import add_producer_arguments

    p = ArgumentParser(prog="python -m optim.tensorrt", description="Build a TensorRT engine (Torch-TensorRT, GPU).")
    add_producer_arguments(p, device=False)
    add_options(p, TRT_ARGS)
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="largest batch the engine accepts")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from optim.cli import producer_run
    from optim.variant import build

    args = build_parser().parse_args(argv)
    cfg = TrtConfig(precision=args.precision, max_batch=args.max_batch, opt_batch=min(32, args.max_batch)).validate()
    require_torch_tensorrt(cfg.precision)  # fail fast, before loading anything
    recipe = f"trt({cfg.precision})"
    run = producer_run(args, recipe, device="cuda", needs_data=cfg.precision == "int8")
    loaded, out = run.loaded, run.out
    ctx = run.context(out, options={"max_batch": cfg.max_batch})
    variant = build(recipe, loaded, ctx)
    entry = variant.manifest["steps"][-1]
    x = ctx.example_input(1)
    eager_predict, eager_prepare = module_runtime(loaded.model.to("cuda"), "cuda")
    with torch.inference_mode():
        diff = (variant(x) - eager_predict(eager_prepare(x)).float().cpu()).abs().max().item()
    variant.manifest["check"] = {"max_abs_diff_vs_eager": diff}
    variant.save(out)
    print(f"{recipe}: {loaded.info.arch} on {entry['gpu']}, TensorRT {entry['tensorrt']}")
    print(f"  engine build {entry['engine_build_s']:.1f}s (cache {entry['engine_cache']})")
    print(f"  max |logit diff| vs eager FP32: {diff:.2e}")
    print(f"saved {out}")
    return 0
