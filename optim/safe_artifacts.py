"""Variant directories are artifacts people pass around (CI caches, colleagues); loading one must never run code
that came with it.

- File names in a manifest are plain names inside the directory (no ``..``, no absolute paths), and each file's
  sha256, recorded when the variant was saved, must match: a swapped or truncated artifact is refused.
- ``.pt2`` archives (``torch.export``) are checked before ``torch.export.load`` sees them: ``torch.export.load``
  falls back to ``weights_only=False`` for tensors, unpickles "opaque" constants with plain ``pickle``, loads
  AOTInductor shared libraries, evaluates symbolic shape expressions with sympy, and resolves call targets by
  walking attributes of ``torch`` (``torch.os.system`` resolves). So: no opaque constants, no legacy pickled
  weight files, no AOTInductor code; every call target an operator (``torch.ops.*``, ``_operator.*``, ``math.*``);
  every shape expression made of symbols, numbers, operators and a fixed set of function names; and the load
  itself runs with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1``, so each tensor it reads goes through the weights-only
  unpickler.
- ONNX files may keep tensors in external files; those must be plain names inside the directory too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data.errors import CheckpointError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,200}$")
_ALLOWED_TARGET_PREFIXES = ("torch.ops.", "_operator.", "math.", "torch._assert", "torch.sym_", "#")
_EXPR_TOKEN_RE = re.compile(
    r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\d+(?:\.\d+)?(?:e[+-]?\d+)?)|'([a-z]+\d+)'|(\*\*|//|[-+*/%(),<>=!&|~]))"
)
# Assumptions sympy's srepr writes as keyword arguments: Symbol('s77', positive=True, integer=True).
_EXPR_KEYWORDS = {
    "positive",
    "negative",
    "nonnegative",
    "nonpositive",
    "integer",
    "real",
    "finite",
    "zero",
    "nonzero",
    "even",
    "odd",
    "commutative",
    "extended_real",
}
# Functions a torch shape expression may use (torch.utils._sympy.functions and sympy basics).
_EXPR_FUNCTIONS = {
    "FloorDiv",
    "ModularIndexing",
    "Where",
    "PythonMod",
    "Mod",
    "CleanDiv",
    "CeilToInt",
    "FloorToInt",
    "CeilDiv",
    "LShift",
    "RShift",
    "PowByNatural",
    "FloatPow",
    "FloatTrueDiv",
    "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat",
    "TruncToInt",
    "RoundToInt",
    "RoundDecimal",
    "ToFloat",
    "Identity",
    "OpaqueUnaryFn_sqrt",
    "Max",
    "Min",
    "Abs",
    "Eq",
    "Ne",
    "Lt",
    "Le",
    "Gt",
    "Ge",
    "And",
    "Or",
    "Not",
    "True",
    "False",
    "oo",
    "nan",
    "zoo",
    "Integer",
    "Rational",
    "Float",
    "Symbol",
    "Mul",
    "Add",
    "Pow",
    "sqrt",
    "floor",
    "ceiling",
    "Piecewise",
    "BitwiseFn_bitwise_and",
    "BitwiseFn_bitwise_or",
}
_SYMBOL_RE = re.compile(r"^[a-z]+\d+$")  # s0, u1, ps2: the symbols torch.export creates


def artifact_file(directory: Path, name: Any, what: str = "artifact") -> Path:
    """``directory / name`` for a manifest's file name, refusing anything that is not a plain name inside it."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise CheckpointError(f"{directory}: manifest names {what} {name!r}, which is not a plain file name")
    path = directory / name
    if not path.is_file():
        raise CheckpointError(f"{directory}: {name} is missing")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_recorded_digest(directory: Path, manifest: dict[str, Any], path: Path) -> None:
    """Refuse a file whose sha256 differs from the one recorded when the variant was saved."""
    recorded = ((manifest.get("artifacts") or {}).get(path.name) or {}).get("sha256")
    if recorded is None:
        raise CheckpointError(f"{directory}: the manifest records no sha256 for {path.name}; save the variant again")
    if sha256_of(path) != recorded:
        raise CheckpointError(f"{directory}: {path.name} does not match the sha256 recorded when it was saved")


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                yield key, item
                stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)


def _check_expression(text: str) -> None:
    pos = 0
    while pos < len(text):
        match = _EXPR_TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise CheckpointError(f"shape expression {text[:60]!r} has characters a shape expression never holds")
        name = match.group(1)
        if name and name not in _EXPR_FUNCTIONS and name not in _EXPR_KEYWORDS and not _SYMBOL_RE.match(name):
            raise CheckpointError(f"shape expression {text[:60]!r} names {name!r}, not a known shape function")
        pos = match.end()


def _check_program(data: Any, source: str) -> None:
    for key, value in _walk(data):
        if key == "target" and isinstance(value, str) and not value.startswith(_ALLOWED_TARGET_PREFIXES):
            raise CheckpointError(f"{source} calls {value[:80]!r}, which is not an operator")
        if key == "expr_str" and isinstance(value, str):
            _check_expression(value)


def check_pt2(path: Path, allow_torchbind: bool = False) -> None:
    """Refuse a ``torch.export`` archive that ``torch.export.load`` could run code from (see the module doc).

    ``allow_torchbind``: a TensorRT program keeps its engine as a torchbind object, read by TorchScript's own
    unpickler (C++ classes only, no Python); its file is accepted only with the sha256 recorded at save time.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path} is not a .pt2 archive ({exc})") from None
    with archive:
        for info in archive.infolist():
            name = info.filename
            part = name.split("/", 1)[1] if "/" in name else name
            if part.startswith("data/aotinductor/"):
                raise CheckpointError(f"{path} holds AOTInductor code ({name}); optbench does not load compiled code")
            if re.match(r"data/(weights|constants)/[^/]+\.pt$", part):
                raise CheckpointError(f"{path} holds a legacy pickled file ({name}); export it again")
            if re.match(r"data/constants/opaque_obj", part) or (
                not allow_torchbind and re.match(r"data/constants/custom_obj", part)
            ):
                raise CheckpointError(f"{path} holds a pickled Python object ({name}); optbench loads tensors only")
            if name.endswith(".json"):
                try:
                    data = json.loads(archive.read(info))
                except (ValueError, UnicodeDecodeError):
                    raise CheckpointError(f"{path}: {name} is not valid JSON") from None
                _check_program(data, f"{path}:{name}")


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Every ``torch.load`` inside goes through the weights-only unpickler, whatever its caller asked for."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_onnx_external_data(path: Path) -> None:
    """Every tensor an ONNX file keeps outside itself must live in a plain file beside it."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others for a damaged file
        raise CheckpointError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        artifact_file(path.parent, location, "external ONNX data")
