"""Carried wheels: fetched where a registry answers, unpacked on the lent machine only where it lacks the package.

Pure Python (py3-none-any) or one build for every CPython >= 3.10 (cp310-abi3), so one folder serves whatever
Python the lent machine has. A wheel is a zip of the files pip would place in site-packages, so unpacking it into a
scratch folder on ``PYTHONPATH`` is installing it, without pip and without writing to the machine's Python.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

# torchao's release must match the machine's torch: 0.17.0 goes with torch 2.11, the torch of the GPU machines in
# docs/gpu.md (the pinned environment has 0.18.0 with torch 2.14.1).
GPU_WHEELS = (
    "torchao==0.17.0",
    "torch-pruning==1.6.1",
    "onnxscript==0.7.2",
    "onnx-ir==1.1.0",
    "onnxslim==0.1.98",
    "pytest-benchmark==5.3.1",
    "py-cpuinfo2==10.1.1",
    "tabulate==0.10.0",
    "safetensors==0.8.0",
)

_WHEEL = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_fits(filename: str, version: tuple[int, int] | None = None, machine: str | None = None) -> str | None:
    """None when this interpreter can use the wheel, else why not (pure-Python, abi3 or this CPython's own build)."""
    match = _WHEEL.match(filename)
    if not match:
        return "not a wheel file name"
    major, minor = version or sys.version_info[:2]
    arch = machine or platform.machine()
    plats = match["plat"].split(".")
    if not any(p == "any" or (p.startswith(("manylinux", "linux", "musllinux")) and p.endswith(arch)) for p in plats):
        return f"built for {match['plat']}, this machine is linux {arch}"
    abis, pys = match["abi"].split("."), match["py"].split(".")
    if "none" in abis and any(p in ("py3", f"py{major}{minor}", f"py{major}") for p in pys):
        return None
    for tag in pys:
        found = re.fullmatch(r"cp(\d)(\d+)", tag)
        if not found:
            continue
        wanted = (int(found[1]), int(found[2]))
        if "abi3" in abis and wanted <= (major, minor):
            return None
        if wanted == (major, minor):
            return None
    return f"built for {match['py']}-{match['abi']}, this is CPython {major}.{minor}"


def installed_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def unpack_wheels(wheels: Path, site: Path) -> list[dict[str, Any]]:
    """Unpack each carried wheel whose package the machine lacks into ``site`` (on PYTHONPATH for every step).

    A package the machine already has is left as the machine has it: its build matches the machine's torch, a
    carried one may not. Returns one entry per wheel: ``unpacked``, ``not needed`` or ``ignored``, and why.
    """
    report: list[dict[str, Any]] = []
    for wheel in sorted(wheels.glob("*.whl")):
        match = _WHEEL.match(wheel.name)
        entry: dict[str, Any] = {"wheel": wheel.name, "size_bytes": wheel.stat().st_size}
        if not match:
            report.append({**entry, "action": "ignored", "why": "not a wheel file name"})
            continue
        dist = canonical(match["name"])
        entry["package"], entry["version"] = dist, match["version"]
        have = installed_version(dist)
        unfit = wheel_fits(wheel.name)
        if have is not None:
            entry.update(action="not needed", why=f"the machine has {dist} {have}")
        elif any(r.get("package") == dist and r.get("action") == "unpacked" for r in report):
            entry.update(action="ignored", why="another wheel of this package was unpacked")
        elif unfit:
            entry.update(action="ignored", why=unfit)
        else:
            why = _unpack(wheel, site)
            entry.update(action="ignored" if why else "unpacked", why=why)
        report.append(entry)
    return report


def _unpack(wheel: Path, site: Path) -> str:
    """Unpack one wheel into ``site``; '' when done, else why it could not be."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    except (zipfile.BadZipFile, OSError) as exc:
        return f"cannot unpack: {exc}"
    for data in site.glob("*.data"):  # purelib/platlib of a .data folder belong in site-packages itself
        for sub in ("purelib", "platlib"):
            for item in (data / sub).glob("*") if (data / sub).is_dir() else ():
                shutil.move(str(item), str(site / item.name))
        shutil.rmtree(data, ignore_errors=True)
    return ""


def fetch_wheels(dest: Path) -> int:
    """``pip download --no-deps`` of :data:`GPU_WHEELS` into ``dest`` (on a machine that reaches a registry)."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", *fetch_args(dest), *GPU_WHEELS]
    print(" ".join(command), flush=True)
    code = subprocess.call(command)
    total = sum(w.stat().st_size for w in dest.glob("*.whl"))
    for wheel in sorted(dest.glob("*.whl")):
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    print(f"{total / 2**20:7.2f} MiB  in all ({dest})")
    return code


def fetch_args(dest: Path) -> list[str]:
    """Tags every lent machine can use: pure Python, or abi3 for CPython >= 3.10 on manylinux x86_64."""
    platforms = ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
    args = ["--no-deps", "--only-binary=:all:", "--dest", str(dest), "--python-version", "3.10"]
    args += ["--implementation", "cp", "--abi", "abi3", "--abi", "none"]
    for plat in platforms:
        args += ["--platform", plat]
    return args
