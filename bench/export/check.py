"""``--check``: the exported folder, run on its own, gives the predictions the sweep measured.

predict.py runs on the run's val split (as image files, in val order: :mod:`bench.export.dataset_files`) in a fresh
virtual environment holding only requirements.txt (``python -m venv`` + ``pip install -r``), or under an interpreter
the user names (``--check-python``: torch is too large to install for a check). Either way it runs from a scratch
folder outside the checkout, with imports of timm, of optbench's packages and of the run's model factory (a user's
own model class) blocked, so a pass also proves that the folder needs none of them. Its top-1 is compared image by
image with the predictions the measurement process kept (bench.run.process.predictions_path): identical for all
images where the same kernels run as were measured (ONNX Runtime, OpenVINO, an eager program), at least the
variant's measured agreement with fp32 where a compiler may choose other kernels (torch.compile, TensorRT).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.export.dataset_files import val_image_files
from bench.export.model_card import append_check
from bench.export.source import Chosen
from data.errors import InputError

BLOCKED = ("timm", "bench", "optim", "models", "data")
BLOCKER = '''"""Installed by optbench's export check: an exported folder must not import these."""
import sys

BLOCKED = {blocked!r}


class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is blocked: an exported folder needs no optbench, timm or model code")
        return None


sys.meta_path.insert(0, _Blocked())
'''
PIP_TIMEOUT_S = 1800
PREDICT_TIMEOUT_S = 1800
SPEED_SECONDS = 5  # predict.py --time: batch-1 calls for this long after its warm-up
SLOWER_WARNING = 1.5  # a ratio to the sweep's p50 that noise alone rarely reaches: said, never the verdict


def blocked_env(blocker_dir: Path, also: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment a checked interpreter runs in: the blocker first on the path (blocking ``BLOCKED`` and the
    top-level packages in ``also``, e.g. the user's model factory), nothing of the checkout."""
    blocker_dir.mkdir(parents=True, exist_ok=True)
    (blocker_dir / "sitecustomize.py").write_text(BLOCKER.format(blocked=tuple(dict.fromkeys((*BLOCKED, *also)))))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(blocker_dir), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def fresh_venv(folder: Path, scratch: Path) -> str:
    """A new virtual environment with only the folder's requirements.txt; its python."""
    venv = scratch / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        raise InputError(f"cannot create a virtual environment for the check: {_last_line(made.stderr)}")
    python = str(venv / "bin" / "python")
    print(f"check: installing {folder / 'requirements.txt'} into a fresh virtual environment", file=sys.stderr)
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(folder / "requirements.txt")]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    if done.returncode != 0:
        raise InputError(f"pip could not install the folder's requirements.txt: {_last_line(done.stderr)}")
    return python


def run_predict(
    python: str, folder: Path, images: list[Path], batch: int, scratch: Path, blocked: tuple[str, ...] = ()
) -> list[int]:
    """predict.py's top-1 for each image, run under ``python`` with the blocker, from ``scratch``."""
    listing = scratch / "val.txt"
    listing.write_text("".join(f"{p}\n" for p in images))
    work = scratch / "work"
    work.mkdir(exist_ok=True)
    command = [python, str(folder / "predict.py"), "--list", str(listing), "--top-k", "1", "--batch-size", str(batch)]
    done = subprocess.run(
        [*command, "--json"],
        capture_output=True,
        text=True,
        cwd=work,
        env=blocked_env(scratch / "blocker", blocked),
        timeout=PREDICT_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise CheckFailed(f"predict.py exited {done.returncode}: {_last_line(done.stderr)}")
    try:
        results = json.loads(done.stdout)
        return [int(item["top"][0]["index"]) for item in results]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
        raise CheckFailed(f"predict.py printed no JSON result: {_last_line(done.stdout)}") from None


class CheckFailed(Exception):
    """The exported folder did not run or did not agree: the check fails (exit 1) with this line."""


def required_agreement(info: dict[str, Any]) -> tuple[float, str]:
    if info.get("exact"):
        return 100.0, f"{info.get('runtime')} runs the kernels that were measured"
    try:
        measured = float(info.get("measured_agreement"))
    except (TypeError, ValueError):
        measured = 100.0
    return min(100.0, measured), "a compiler may pick other kernels: at least the variant's agreement with fp32"


def check_export(folder: Path, chosen: Chosen, python: str | None = None) -> int:
    """Compare the folder's predictions with the run's; prints one verdict line, returns 0 (pass) or 1 (fail).
    A run that kept no predictions cannot be compared: one line, InputError (exit 2)."""
    import numpy as np

    info = json.loads((folder / "export.json").read_text())
    if info.get("gpu") and shutil.which("nvidia-smi") is None:
        raise InputError(f"cannot check a {chosen.device} variant without an NVIDIA GPU here; {folder} is written")
    if not chosen.predictions.is_file():
        raise InputError(
            f"cannot compare: run {chosen.run.run_id} kept no val predictions for {chosen.recipe} (an older optbench, "
            f"or no accuracy measured); the export in {folder} is not checked"
        )
    expected = np.load(chosen.predictions)
    manifest = chosen.manifest()
    where = f"under {python}" if python else "in a fresh virtual environment with only requirements.txt"
    with tempfile.TemporaryDirectory(prefix="optbench-check-") as tmp:
        scratch = Path(tmp)
        images = val_image_files(chosen.run.config, manifest["data_config"], scratch / "val")
        if len(images) != len(expected):
            raise InputError(
                f"cannot compare: the val split has {len(images)} images now, the run kept {len(expected)} predictions"
            )
        try:
            interpreter = python or fresh_venv(folder, scratch)
            batch = int(info["batch_size"])
            got = np.asarray(run_predict(interpreter, folder, images, batch, scratch, _factory_package(chosen)))
            speed = _speed_line(interpreter, folder, scratch, chosen)
        except CheckFailed as exc:
            return _verdict(folder, f"check FAILED: {exc} (predict.py {where})", False)
    same = int((got == expected).sum())
    agreement = 100.0 * same / max(1, len(expected))
    required, why = required_agreement(info)
    blocked = tuple(dict.fromkeys((*BLOCKED, *_factory_package(chosen))))
    passed = agreement >= required - 1e-9
    line = (
        f"check {'passed' if passed else 'FAILED'}: predict.py {where}, with {', '.join(blocked)} blocked, gives the "
        f"measured top-1 for {same}/{len(expected)} val images ({agreement:.2f}%); required {required:.2f}% ({why})"
    )
    return _verdict(folder, f"{line}\n{speed}", passed)


def _speed_line(python: str, folder: Path, scratch: Path, chosen: Chosen) -> str:
    """The exported model's batch-1 p50 in the same environment beside the sweep's: informative, never the verdict
    (a speed figure needs a quiet machine, which a check cannot promise)."""
    done = subprocess.run(
        [python, str(folder / "predict.py"), "--time", str(SPEED_SECONDS)],
        capture_output=True,
        text=True,
        cwd=scratch / "work",
        env=blocked_env(scratch / "blocker", _factory_package(chosen)),
        timeout=PREDICT_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise CheckFailed(f"predict.py --time exited {done.returncode}: {_last_line(done.stderr)}")
    try:
        p50 = float(json.loads(done.stdout)["p50_ms"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise CheckFailed(f"predict.py --time printed no figure: {_last_line(done.stdout)}") from None
    measured = chosen.row("latency").get("p50_ms")
    against = f" against {float(measured):.3g} ms in the sweep ({p50 / float(measured):.2f}x)" if measured else ""
    line = f"speed: batch-1 p50 {p50:.3g} ms here{against}; a figure for a quiet machine, not part of the verdict"
    if measured and p50 / float(measured) >= SLOWER_WARNING:
        line += (
            f"\nwarning: {p50 / float(measured):.1f}x slower than measured: on the machine of the sweep and at rest, "
            "this folder should not run slower; if it does, the card's speed figures do not hold for it"
        )
    return line


def _factory_package(chosen: Chosen) -> tuple[str, ...]:
    """The top-level package of the run's model factory (a user's own model class): the folder must not need it."""
    from bench.export.dataset_files import load_spec

    spec = load_spec(chosen.run.config)
    return (spec.factory.split(":")[0].split(".")[0],) if spec is not None and spec.factory else ()


def _verdict(folder: Path, line: str, passed: bool) -> int:
    print(line)
    append_check(folder, line)
    return 0 if passed else 1
