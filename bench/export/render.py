"""The text files of an exported folder: predict.py and serve.py (templates with the variant's settings filled in and
its runtime section put in), requirements.txt and the Dockerfile.

The templates (:mod:`bench.export.templates`) are ordinary Python files, linted with the project, that import nothing
from optbench. A section between ``# --- NAME ---`` and ``# --- end NAME ---`` is replaced whole; a runtime section's
own imports join predict.py's imports at the top, so the written file reads as one module.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from pathlib import Path
from typing import Any

from bench.export.formats import ModelFiles

TEMPLATES = Path(__file__).resolve().parent / "templates"
RUNTIME_TEMPLATES = {
    "onnxruntime": "runtime_onnx.py",
    "openvino": "runtime_openvino.py",
    "torch": "runtime_torch.py",
    "tensorrt": "runtime_tensorrt.py",
}
WEB_PACKAGES = ("fastapi", "uvicorn", "python-multipart")
# The CUDA userland a GPU image starts from (the same as the project's Dockerfile.cuda).
CUDA_IMAGE = "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _replace_section(text: str, name: str, body: str) -> str:
    start, end = f"# --- {name} ---\n", f"# --- end {name} ---\n"
    if text.count(start) != 1 or text.count(end) != 1:
        raise RuntimeError(f"template section {name!r} is missing or repeated")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return head + start + (body if body.endswith("\n") else body + "\n") + end + tail


def literal(value: Any) -> str:
    """``value`` as Python source, strings in double quotes as the templates write them."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return repr(value)


def _settings(values: dict[str, Any]) -> str:
    """``NAME = value`` lines; a dict too long for one line gets a line per key."""
    lines = []
    for key, value in values.items():
        text = f"{key} = {literal(value)}"
        if len(text) > 100 and isinstance(value, dict):
            items = "".join(f"    {literal(k)}: {literal(v)},\n" for k, v in value.items())
            text = f"{key} = {{\n{items}}}"
        lines.append(text + "\n")
    return "".join(lines)


def _import_key(line: str) -> tuple[bool, str]:
    return line.startswith("from "), line.split()[1].lower()


def _merge_imports(text: str, extra: list[str]) -> str:
    """Put a runtime section's imports into predict.py's standard-library or third-party import block."""
    head, sep, rest = text.partition("\nHERE = ")
    blocks = head.split("\n\n")
    stdlib, third = blocks[-2].splitlines(), blocks[-1].strip("\n").splitlines()
    for line in extra:
        target = stdlib if line.split()[1].split(".")[0] in sys.stdlib_module_names else third
        if line not in target:
            target.append(line)
    blocks[-2] = "\n".join(sorted(stdlib, key=_import_key))
    blocks[-1] = "\n".join(sorted(third, key=_import_key)) + "\n"
    return "\n\n".join(blocks) + sep + rest


def _runtime_parts(runtime: str) -> tuple[list[str], str]:
    """(the runtime template's import lines, the rest of it without its docstring and imports)."""
    lines = (TEMPLATES / RUNTIME_TEMPLATES[runtime]).read_text().splitlines()
    one_line = lines[0].count('"""') == 2
    doc_end = 0 if one_line else next(i for i, line in enumerate(lines[1:], 1) if line.rstrip().endswith('"""'))
    imports, body, in_body = [], [], False
    for line in lines[doc_end + 1 :]:
        if not in_body and (line.startswith(("import ", "from ")) or not line.strip()):
            if line.strip():
                imports.append(line)
            continue
        in_body = True
        body.append(line)
    return imports, "\n\n" + "\n".join(body).strip("\n") + "\n\n\n"


def predict_py(model: ModelFiles, recipe: str, threads: int, batch_size: int) -> str:
    text = (TEMPLATES / "predict.py").read_text()
    settings = {
        "RECIPE": recipe,
        "RUNTIME": model.runtime,
        "THREADS": int(threads),
        "BATCH_SIZE": int(batch_size),
        "STATIC_SHAPES": model.static_shapes,
        "RUNTIME_OPTIONS": model.options,
    }
    text = _replace_section(text, "settings", _settings(settings))
    imports, body = _runtime_parts(model.runtime)
    return _merge_imports(_replace_section(text, "runtime", body), imports)


def serve_py(serving: dict[str, Any], note: str) -> str:
    text = (TEMPLATES / "serve.py").read_text()
    lines = "".join(
        f'{key.upper()} = setting("{key.upper()}", {kind(serving[key])!r}, {kind.__name__}, {low})\n'
        for key, kind, low in (
            ("max_batch", int, 1),
            ("max_delay_ms", float, 0),
            ("instances", int, 1),
            ("threads", int, 1),
        )
    )
    return _replace_section(text, "settings", lines + f"SERVING_NOTE = {literal(note)}\n")


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def requirements(model: ModelFiles, measured: dict[str, str]) -> tuple[str, list[str]]:
    """requirements.txt: the runtime at its measured version, numpy and Pillow as installed where the export ran (the
    run does not record them), and the web packages; returns the text and notes on anything left unpinned."""
    lines, notes = [], []
    for package in model.packages:
        version = measured.get(package) or (measured.get("onnxruntime") if package == "onnxruntime-gpu" else None)
        if version:
            lines.append(f"{package}=={version}")
        else:
            lines.append(package)
            notes.append(f"{package}: the run recorded no version, so requirements.txt leaves it unpinned")
    for package in ("numpy", "pillow", *WEB_PACKAGES):
        version = _installed(package)
        lines.append(f"{package}=={version}" if version else package)
    return "\n".join(lines) + "\n", notes


def dockerfile(model: ModelFiles, files: list[str], python: str) -> str:
    """A small image that runs serve.py: python-slim on CPU, the CUDA userland for GPU variants."""
    major_minor = ".".join(str(python or "3.11").split(".")[:2])
    if model.gpu:
        base = [
            f"FROM {CUDA_IMAGE}",
            "RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \\",
            "    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv",
            "ENV PATH=/opt/venv/bin:$PATH",
        ]
    else:
        base = [f"FROM python:{major_minor}-slim"]
    torch_cpu = []
    if model.runtime == "torch" and not model.gpu:
        torch_cpu = [
            "# the CPU build of torch (PyPI's is the CUDA one, several GB); requirements.txt pins its version",
            f"RUN pip install --no-cache-dir --index-url {TORCH_CPU_INDEX} \"$(grep '^torch==' requirements.txt)\"",
        ]
    copies = " ".join(files)
    lines = [
        *base,
        "ENV PYTHONUNBUFFERED=1 PORT=8080",
        "WORKDIR /app",
        "COPY requirements.txt ./",
        *torch_cpu,
        "RUN pip install --no-cache-dir -r requirements.txt",
        f"COPY {copies} ./",
        "EXPOSE 8080",
        'CMD ["python", "serve.py"]',
    ]
    return "\n".join(lines) + "\n"


def dockerfile_copies(text: str) -> list[str]:
    """Every source a Dockerfile's COPY lines name (for the check that each exists)."""
    out = []
    for line in text.splitlines():
        if line.startswith("COPY "):
            parts = line.split()[1:]
            out += [p for p in parts[:-1] if not p.startswith("--")]
    return out
