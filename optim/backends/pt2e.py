"""PT2E static INT8 for x86 (torchao's X86InductorQuantizer): export, observe, convert, compile with freezing.

The recipe that works on torch 2.14 / torchao 0.18 (pinned by ``tests/test_quantize.py``):

1. ``torch.export.export(model, (x,), dynamic_shapes=({0: Dim.AUTO},)).module()``
2. ``prepare_pt2e`` (or ``prepare_qat_pt2e``) from ``torchao.quantization.pt2e.quantize_pt2e`` with
   ``X86InductorQuantizer`` from ``torchao.quantization.pt2e.quantizer.x86_inductor_quantizer``
   (torch.ao's copy is gone), calibration on train images, ``convert_pt2e``;
3. ``torch.compile`` while ``torch._inductor.config.patch(freezing=True)`` is active. Passing
   ``options={"freezing": True}`` instead fails with ``onednn.qconv_prepack.default`` unsupported.

Which Inductor wrapper calls the compiled graph depends on the batch by default (``wrapper=auto``): the C++
wrapper (``cpp_wrapper=True``) at batch 1, where it removes per-kernel Python overhead, at the price of a first
compile about twice as long, and the Python wrapper for larger batches, where the C++ one was slower on a Xeon
with AMX (docs/measurement.md, "Our recipes beside plain scripts"). ``ptq(x86,wrapper=cpp)`` or
``wrapper=python`` uses one for all sizes.

Inductor reads ``freezing`` when it compiles, which is at the first call for each new input shape, so
every call runs inside the patch (a dict update, microseconds); global config is restored after each call.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.errors import CheckpointError, InputError

X86_CALIB = ("histogram", "minmax")


def _quantizer(calib: str, keep_modules: Sequence[str], is_qat: bool = False):
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    if calib not in X86_CALIB:
        raise InputError(f"x86 calibration must be one of {', '.join(X86_CALIB)}, got {calib!r}")
    config = xiq.get_default_x86_inductor_quantization_config(is_qat=is_qat)
    if calib == "minmax" and not is_qat:
        from torchao.quantization.pt2e import MinMaxObserver

        act = dataclasses.replace(
            config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12)
        )
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(config)
    for name in keep_modules:
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


def export_graph(module: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """``torch.export`` with a dynamic batch axis; a model the exporter cannot trace is bad input here."""
    try:
        program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    except Exception as exc:  # torch.export raises many types for unsupported code; all mean "cannot quantize"
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InputError(f"torch.export cannot capture this model for PT2E quantization: {first}") from None
    return program.module()


@torch.no_grad()
def ptq_x86(
    module: nn.Module, example: torch.Tensor, calib_batches: Iterable[torch.Tensor], calib: str, keep: Sequence[str]
) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """Static INT8 PT2E graph (not compiled yet), calibrated on ``calib_batches``."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    start = time.perf_counter()
    graph = export_graph(module.eval(), example)
    prepared = prepare_pt2e(graph, _quantizer(calib, keep))
    images = 0
    for batch in calib_batches:
        prepared(batch)
        images += batch.shape[0]
    if images == 0:
        raise InputError("no calibration images: the train split is empty")
    converted = strip_unused_tensors(convert_pt2e(prepared))
    return converted, {
        "quantizer": "torchao X86InductorQuantizer (PT2E)",
        "activations": "uint8 (asymmetric, per-tensor)",
        "weights": "int8 (symmetric, per-channel)",
        "calibration": {"method": calib, "images": images},
        "fp32_modules": list(keep),
        "quantize_s": round(time.perf_counter() - start, 3),
    }


def qat_prepare(module: nn.Module, example: torch.Tensor, keep: Sequence[str]) -> torch.fx.GraphModule:
    """PT2E QAT graph with fake quantization; ``.train()``/``.eval()`` work on it (BatchNorm, dropout)."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    graph = export_graph(module.train(), example)
    prepared = prepare_qat_pt2e(graph, _quantizer("histogram", keep, is_qat=True))
    allow_exported_model_train_eval(prepared)
    return prepared


def qat_convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e import allow_exported_model_train_eval, move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    move_exported_model_to_eval(prepared)
    converted = strip_unused_tensors(convert_pt2e(prepared))
    allow_exported_model_train_eval(converted)
    return converted


def strip_unused_tensors(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Drop the FP32 parameters ``convert_pt2e`` leaves behind once the graph reads their INT8 copies.

    Without this the saved program holds both (25 MB instead of 5 MB for resnet10t) and memory doubles.
    """
    used = {node.target for node in graph.graph.nodes if node.op == "get_attr"}
    for name, _ in list(graph.named_parameters()) + list(graph.named_buffers()):
        if name in used:
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = graph.get_submodule(owner_name) if owner_name else graph
        if attr in owner._parameters:
            del owner._parameters[attr]
        elif attr in owner._buffers:
            del owner._buffers[attr]
    graph.recompile()
    return graph


# Each wrapper and how a build's notes name it (module docstring).
WRAPPERS = {"auto": " + cpp_wrapper at batch 1", "cpp": " + cpp_wrapper", "python": ""}


def uses_cpp_wrapper(wrapper: str, batch: int) -> bool:
    """Whether a graph compiled for ``batch`` images is called through Inductor's C++ wrapper (module docstring)."""
    return wrapper == "cpp" or (wrapper == "auto" and batch == 1)


def register_x86_fusions() -> None:
    """Register the Inductor passes that fuse INT8 quantize/dequantize into oneDNN's quantized convolutions.

    torchao registers them as a side effect of importing ``x86_inductor_quantizer``. A process that only loads a
    saved program never imports the quantizer, and Inductor then compiles every convolution as dequantize, FP32
    convolution, quantize: slower than the FP32 model (docs/measurement.md, "A saved PT2E variant in a fresh
    process"). Every compile of a PT2E graph goes through here, so the builder and the loader compile the same way.
    """
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401 - registers the passes


class FrozenCompiled:
    """A ``torch.compile``-d PT2E graph whose every call runs with Inductor freezing on (see module docstring)."""

    def __init__(self, graph: nn.Module, wrapper: str = "auto") -> None:
        if wrapper not in WRAPPERS:
            raise ValueError(f"wrapper must be one of {tuple(WRAPPERS)}, got {wrapper!r}")
        register_x86_fusions()
        self.graph = graph
        self.wrapper = wrapper
        # dynamic=False, as in optim.compile: each batch size gets its own static graph. Left automatic, the
        # second batch size turned the batch dimension symbolic, so the throughput batch ran a generic kernel and
        # every later size (the val loader's remainder) compiled once more.
        self.compiled = torch.compile(graph, dynamic=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor_config

        # Inductor reads the wrapper when a batch size first compiles; later calls only need the same settings.
        with inductor_config.patch({"freezing": True, "cpp_wrapper": uses_cpp_wrapper(self.wrapper, x.shape[0])}):
            return self.compiled(x)


def compile_frozen(
    graph: nn.Module, warmup_shapes: Sequence[tuple[int, ...]], wrapper: str = "auto"
) -> tuple[FrozenCompiled, float]:
    """Compile and run once per shape so compile time lands in the build, not in the first timed call.

    The example is made outside inference mode, as callers' batches are: Dynamo guards on a tensor's dispatch
    keys, and an inference tensor here would make the first real call compile everything again.
    """
    start = time.perf_counter()
    compiled = FrozenCompiled(graph, wrapper)
    for shape in warmup_shapes:
        example = torch.randn(*shape)
        with torch.inference_mode():
            compiled(example)
    return compiled, time.perf_counter() - start


def save_graph(graph: torch.fx.GraphModule, example: torch.Tensor, path: Path) -> None:
    """Save the converted graph as an ExportedProgram (``torch.export.save``): no pickled classes, no rebuild."""
    program = torch.export.export(graph, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, str(path))


def load_graph(path: Path) -> torch.fx.GraphModule:
    """Load a saved program after :func:`optim.safe_artifacts.check_pt2`; every tensor read weights-only."""
    from optim.safe_artifacts import check_pt2, weights_only_loads

    check_pt2(path)
    quiet = logging.getLogger("torch.utils._pytree")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # torchao's import warns about a deprecation in torch: not the user's business
    try:
        import torchao.quantization.pt2e  # noqa: F401 - registers the quantized_decomposed ops the program uses
    finally:
        quiet.setLevel(level)
    with weights_only_loads():
        try:
            return torch.export.load(str(path)).module()
        except (RuntimeError, ValueError, KeyError, OSError, pickle.UnpicklingError) as exc:
            text = str(exc).strip()
            why = (
                "it holds a pickled object that is not plain tensors"
                if "Weights only load failed" in text
                else (text.splitlines()[0][:160] if text else type(exc).__name__)
            )
            raise CheckpointError(f"{path} cannot be loaded as tensors and operators only: {why}") from None
