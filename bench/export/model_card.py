"""MODEL_CARD.md: what was measured for the exported variant, on which machine, and what was not verified.

Every figure comes from the run's rows and leaderboard record (the same ones its leaderboard shows); nothing is
measured again here. ``--check`` appends its result (:func:`append_check`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from bench.export.formats import ModelFiles
from bench.export.source import Chosen


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def shown(value: Any, digits: int = 3, unit: str = "") -> str:
    number = _num(value)
    return "not measured" if math.isnan(number) else f"{number:.{digits}f}{unit}"


def _speed_rows(chosen: Chosen) -> list[tuple[str, str]]:
    lat, thr, rec = chosen.row("latency"), chosen.row("throughput"), chosen.record
    low, high = _num(rec.get("speedup_ci95_low")), _num(rec.get("speedup_ci95_high"))
    interval = f" (95% interval {low:.2f}-{high:.2f})" if not (math.isnan(low) or math.isnan(high)) else ""
    batch = thr.get("batch_size", "?")
    percentiles = " / ".join(shown(lat.get(k), 3, " ms") for k in ("p50_ms", "p90_ms", "p99_ms"))
    return [
        ("latency at batch 1: p50 / p90 / p99", percentiles),
        (f"throughput at batch {batch}", shown(thr.get("throughput_img_s"), 1, " img/s")),
        ("speedup over eager fp32 at batch 1 (paired)", shown(rec.get("speedup_vs_fp32"), 2, "x") + interval),
        (f"throughput speedup over fp32 at batch {batch}", shown(rec.get("throughput_speedup_vs_fp32"), 2, "x")),
    ]


def _accuracy_rows(chosen: Chosen) -> list[tuple[str, str]]:
    first, rec = chosen.first, chosen.record
    if first.get("accuracy_note") or _num(first.get("top1")) != _num(first.get("top1")):
        return [("accuracy", str(first.get("accuracy_note") or "not measured"))]
    return [
        ("top-1 / top-5 on val", f"{shown(first.get('top1'), 2, '%')} / {shown(first.get('top5'), 2, '%')}"),
        ("top-1 drop against fp32", shown(rec.get("top1_drop"), 2, " points")),
        ("agreement with fp32 (same top-1)", shown(first.get("agreement"), 2, "%")),
        ("val images", str(first.get("val_images", "?"))),
    ]


def _serving_lines(serving: dict[str, Any] | None) -> list[str]:
    if not serving:
        return [
            "No serving configuration was measured for this variant (the run has no `serve` row for it): serve.py",
            "answers one image at a time with one model instance. Each setting is an environment variable of serve.py.",
        ]
    rate = serving.get("rate")
    bound = f"p99 {shown(serving.get('p99_ms'), 1, ' ms')} within an SLO of {shown(serving.get('slo_ms'), 1, ' ms')}"
    return [
        f"Measured best serving configuration: batches of up to {serving['max_batch']} images, waiting at most "
        f"{serving['max_delay_ms']:g} ms, {serving['instances']} instance(s) of {serving['threads']} thread(s);",
        f"sustained rate at the bound: {shown(rate, 1, ' requests/s')}, {bound}. serve.py starts with these settings.",
        *(
            [
                "That rate is a lower bound: the search ran out of time before it tried a rate the configuration "
                "could not hold."
            ]
            if serving.get("rate_is_lower_bound")
            else []
        ),
    ]


def _machine_lines(fp: dict[str, Any]) -> list[str]:
    flags = ", ".join(fp.get("cpu_flags") or []) or "none recorded"
    lines = [
        f"- CPU: {fp.get('cpu_model') or 'unknown'} ({fp.get('cpu_logical', '?')} logical CPUs), flags: {flags}",
        f"- threads used: {fp.get('threads', '?')}; Python {fp.get('python', '?')} on {fp.get('platform', '?')}",
    ]
    if fp.get("gpu_name"):
        memory = fp.get("gpu_memory_gb", "?")
        lines.append(f"- GPU: {fp['gpu_name']} (driver {fp.get('gpu_driver') or '?'}, {memory} GB)")
    versions = ", ".join(f"{k} {v}" for k, v in sorted((fp.get("versions") or {}).items()))
    lines.append(f"- libraries: {versions or 'not recorded'}")
    return lines


def _table(rows: list[tuple[str, str]]) -> list[str]:
    return ["| what | measured |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows]]


def _unverified(model: ModelFiles, triton: bool) -> list[str]:
    out = ["- the Docker image was not built (the Dockerfile's COPY sources were checked to exist)"]
    if triton:
        out.append("- the Triton model repository was not served by a Triton server (its config.pbtxt is written from")
        out.append("  the model file's own input and output names and shapes); on a CPU with AMX or avx512_bf16,")
        out.append("  Triton's OpenVINO backend may run BF16, as it has no setting that keeps f32")
    if model.runtime == "tensorrt":
        out.append("- the TensorRT engine was not run: it needs the GPU and TensorRT version that built it")
    elif model.gpu:
        out.append("- this GPU variant was not run by the export (no GPU where it was written)")
    return out


def model_card(chosen: Chosen, manifest: dict[str, Any], model: ModelFiles, extra: dict[str, Any]) -> str:
    """The card's text; ``extra`` holds serving, labels_from, notes, triton (bool), version and files."""
    src = manifest.get("source") or {}
    first = chosen.first
    steps = " -> ".join(str(s.get("step")) for s in manifest.get("steps") or []) or chosen.recipe
    lines = [
        f"# {src.get('arch') or first.get('model')}: {chosen.recipe}",
        "",
        f"Exported by optbench {extra['version']} on {time.strftime('%Y-%m-%d')} from run `{chosen.run.run_id}` "
        f"({chosen.device}), measured {first.get('timestamp', 'at an unknown date')}.",
        "",
        *(
            [f"**Over budget:** {over}. The run's answer would not have named it.", ""]
            if (over := chosen.over_budget())
            else []
        ),
        "## What this is",
        "",
        f"- recipe: `{chosen.recipe}` (steps: {steps}); runtime: {model.runtime}; files: {', '.join(model.files)}",
        f"- source checkpoint: {src.get('checkpoint') or first.get('checkpoint')}, sha256 "
        f"`{src.get('sha256') or first.get('checkpoint_sha256')}` ({src.get('format', '?')} format)",
        f"- classes: {src.get('num_classes') or first.get('num_classes')} (labels.json from {extra['labels_from']})",
        f"- data: {first.get('data_spec') or src.get('data_spec') or 'none recorded'}; "
        f"size {shown(first.get('size_mb'), 2, ' MB')}; quick run: {bool(first.get('quick'))}",
        "",
        "## Measured",
        "",
        *_table(_speed_rows(chosen) + _accuracy_rows(chosen)),
        "",
        "## Serving",
        "",
        *_serving_lines(extra.get("serving")),
        "",
        "## Machine",
        "",
        *_machine_lines(first.get("fingerprint") or {}),
        "",
        "## Not verified where this was exported",
        "",
        *_unverified(model, extra["triton"]),
        "",
    ]
    notes = [*model.notes, *extra.get("notes", [])]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def append_check(folder: Path, line: str) -> None:
    """Add the result of ``--check`` to the card (the folder is the export's output: the run is not touched)."""
    card = folder / "MODEL_CARD.md"
    text = card.read_text() if card.is_file() else ""
    card.write_text(text.rstrip("\n") + "\n\n## Check\n\n" + line + "\n")
