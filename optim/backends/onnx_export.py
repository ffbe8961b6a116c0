"""Module -> ONNX file, and the parity check that proves the file computes what the module computes.

The dynamo exporter (``torch.onnx.export(..., dynamo=True)``) is tried first with a dynamic batch axis
(``Dim.AUTO``: explicit ``Dim(min, max)`` ranges failed on convnext_tiny); when it fails the TorchScript
exporter is tried and the manifest says so. A file that does not match the eager module on real images
(max abs diff, cosine, top-1 agreement) is an error, never a silently wrong variant.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from data.errors import InputError
from optim.evaluate import agreement

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18
MIN_OPSET, MAX_OPSET = 13, 23  # QDQ per-channel needs >= 13; the dynamo exporter writes up to the newest onnx opset


class ParityError(RuntimeError):
    """The exported graph disagrees with the eager module: the variant must not be benchmarked."""


@dataclass(frozen=True)
class ExportConfig:
    """How to export: opset, graph slimming, and which exporter to try first."""

    opset: int = DEFAULT_OPSET
    slim: bool = True
    dynamo: bool = True  # False goes straight to the TorchScript exporter

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ParityConfig:
    """Thresholds for an FP32 export. ORT reorders float sums, so logits differ by ~1e-5 relative, not 0.

    ``max_abs`` is relative to the largest reference logit (``atol + rtol * max|ref|``); cosine and top-1
    agreement are computed over every image checked. 99.5% agreement allows a near-tie to flip on a few images.
    """

    atol: float = 1e-3
    rtol: float = 1e-3
    min_cosine: float = 0.9999
    min_agreement: float = 99.5
    max_images: int = 512


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    return opset


def _dynamo_export(module: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    batch = torch.export.Dim.AUTO
    # The exporter prints progress lines to stdout; keep CLI output to our own report.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
        program.save(str(path))


def _torchscript_export(module: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )


def slim_onnx(path: Path) -> dict[str, Any]:
    """Fold constants and remove redundant nodes with onnxslim, in place; returns node counts before/after."""
    import onnx
    import onnxslim

    before = len(onnx.load(str(path), load_external_data=False).graph.node)
    with contextlib.redirect_stdout(io.StringIO()):
        onnxslim.slim(str(path), str(path))
    after = len(onnx.load(str(path), load_external_data=False).graph.node)
    return {"slim": True, "nodes_before_slim": before, "nodes_after_slim": after}


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, cfg: ExportConfig) -> dict[str, Any]:
    """Export ``module`` to ``path`` (dynamic batch); returns manifest notes (exporter used, warnings, seconds)."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(module, torch.fx.GraphModule):  # exported graphs refuse .eval(); they are already frozen
        module = module.eval()
    start = time.perf_counter()
    notes: dict[str, Any] = {"opset": cfg.opset, "dynamic_batch": True}
    errors = []
    exporter = None
    if cfg.dynamo:
        try:
            _dynamo_export(module, example, path, cfg.opset)
            exporter = "dynamo"
        except Exception as exc:  # any exporter failure: fall back to TorchScript and record why
            errors.append(f"dynamo exporter failed: {type(exc).__name__}: {_first_line(exc)}")
    if exporter is None:
        try:
            _torchscript_export(module, example, path, cfg.opset)
            exporter = "torchscript"
        except Exception as exc:  # both failed: an op no exporter handles is bad input for this model
            errors.append(f"torchscript exporter failed: {type(exc).__name__}: {_first_line(exc)}")
            raise InputError(f"cannot export to ONNX: {'; '.join(errors)}") from None
    notes["exporter"] = exporter
    if errors:
        notes["warning"] = errors[0] + "; used the TorchScript exporter instead"
    onnx.checker.check_model(str(path))
    if cfg.slim:
        import importlib.util

        if importlib.util.find_spec("onnxslim") is None:  # optional polish: say so, do not fail the export
            notes["slim"] = False
            notes["slim_warning"] = "onnxslim is not installed (pip install onnxslim); graph left as exported"
        else:
            notes.update(slim_onnx(path))
    notes["export_s"] = round(time.perf_counter() - start, 3)
    notes["versions"] = _onnx_versions()
    notes["onnx_bytes"] = path.stat().st_size
    return notes


def _onnx_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("onnx", "onnxscript", "onnxslim"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def parity_batches(loader: Iterable | None, example: torch.Tensor, max_images: int) -> list[torch.Tensor]:
    """Real validation images when there are any (random inputs hide argmax flips), else the example batch."""
    if loader is None:
        return [example]
    batches, seen = [], 0
    for images, _ in loader:
        batches.append(images)
        seen += images.shape[0]
        if seen >= max_images:
            break
    return batches or [example]


def parity_metrics(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max abs diff, mean cosine similarity of logit rows, and top-1 agreement in percent."""
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    denom = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = np.where(denom > 0, (ref * cand).sum(1) / np.maximum(denom, 1e-30), 1.0)
    return {
        "max_abs_diff": float(np.abs(ref - cand).max()),
        "max_abs_ref": float(np.abs(ref).max()),
        "cosine": float(cosine.min()),
        "agreement": agreement(ref.argmax(1), cand.argmax(1)),
        "images": int(ref.shape[0]),
    }


def check_parity(
    module: nn.Module, run_onnx, batches: list[torch.Tensor], cfg: ParityConfig | None = None
) -> dict[str, Any]:
    """Compare ``run_onnx(np_batch) -> logits`` with ``module`` on ``batches``; raise :class:`ParityError` if off."""
    cfg = cfg or ParityConfig()
    refs, outs = [], []
    with torch.inference_mode():
        for batch in batches:
            refs.append(module(batch).float().numpy())
            outs.append(np.asarray(run_onnx(batch.numpy()), dtype=np.float32))
    metrics = parity_metrics(np.concatenate(refs), np.concatenate(outs))
    tolerance = cfg.atol + cfg.rtol * metrics["max_abs_ref"]
    problems = []
    if not np.isfinite(metrics["max_abs_diff"]) or metrics["max_abs_diff"] > tolerance:
        problems.append(f"max abs diff {metrics['max_abs_diff']:.3g} > {tolerance:.3g}")
    if metrics["cosine"] < cfg.min_cosine:
        problems.append(f"cosine {metrics['cosine']:.6f} < {cfg.min_cosine}")
    if metrics["agreement"] < cfg.min_agreement:
        problems.append(f"top-1 agreement {metrics['agreement']:.2f}% < {cfg.min_agreement}%")
    result = {**metrics, "tolerance": tolerance, "passed": not problems}
    if problems:
        raise ParityError(f"ONNX parity check failed on {metrics['images']} images: {'; '.join(problems)}")
    return result
