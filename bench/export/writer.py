"""``export_variant``: one measured variant of a run, written as a folder a service can use without optbench or timm.

The folder is written into a hidden staging folder beside ``out`` and moved into place only when every file is
there, so a failed export leaves nothing half-written; the run directory is only read.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.export.dataset_files import class_labels, load_spec
from bench.export.formats import ModelFiles, write_model
from bench.export.model_card import model_card, shown
from bench.export.preprocess import preprocess_spec
from bench.export.render import dockerfile, dockerfile_copies, predict_py, requirements, serve_py
from bench.export.source import Chosen, choose, read_run
from bench.export.triton import BACKENDS, model_name, write_triton
from data.errors import InputError

EXPORT_INFO = "export.json"
SERVED_FILES = ("predict.py", "serve.py", "preprocess.json", "labels.json")


def default_out(chosen: Chosen) -> Path:
    from bench.run.process import safe_name

    return Path.cwd() / f"{chosen.run.run_id}-{safe_name(chosen.recipe)}"


def check_out(
    out: Path, run_dir: Path, force: bool, option: str = "--out", replace: str = "pass --force to replace it"
) -> None:
    """Refuse a target that would change the run, hold other files (without --force), or take a folder the user
    works in (which even --force must not replace). ``option`` and ``replace``: how the command the user typed
    names the folder and the way to replace it."""
    resolved, run = out.resolve(), run_dir.resolve()
    here = Path.cwd().resolve()
    if resolved in (here, Path.home().resolve()) or resolved in here.parents:
        raise InputError(f"{option} {out} is the current folder, one above it, or home: name a folder of its own")
    if resolved == run or run in resolved.parents or resolved in run.parents:
        raise InputError(
            f"{option} {out} is inside the run directory {run_dir} (or holds it); choose a folder outside it"
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise InputError(f"{option} {out} exists and is not empty; {replace}")
        if not (out / EXPORT_INFO).is_file():  # --force replaces an earlier export, never a folder of the user's
            raise InputError(
                f"{option} {out} holds files that are not an optbench export ({EXPORT_INFO} is missing); even "
                "--force replaces only an earlier export: name a new folder"
            )
        added = _added_since_export(out)
        if added:
            raise InputError(
                f"{option} {out} holds files the export did not write ({', '.join(added[:3])}"
                f"{', ...' if len(added) > 3 else ''}); --force would delete them: move them out or name a new folder"
            )


def _added_since_export(out: Path) -> list[str]:
    """Names in an earlier export's folder that it did not write (a user's notes beside the model)."""
    try:
        written = json.loads((out / EXPORT_INFO).read_text()).get("written")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(written, list):
        return []  # an export of an older optbench: it did not record what it wrote
    return sorted(p.name for p in out.iterdir() if p.name not in written and p.name != "__pycache__")


def _measured_threads(chosen: Chosen) -> int:
    value = chosen.first.get("threads") or (chosen.first.get("fingerprint") or {}).get("threads") or 1
    return max(1, int(value))


def _serving(chosen: Chosen, threads: int) -> tuple[dict[str, Any], str, bool]:
    """(serve.py's settings, the note it reports, whether they were measured)."""
    best = chosen.serve_best()
    if best is not None:
        at_least = "at least " if best.get("rate_is_lower_bound") else ""
        note = (
            f"measured: rate {at_least}{shown(best.get('rate'), 1)} req/s at p99 {shown(best.get('p99_ms'), 1)} ms "
            f"(SLO {shown(best.get('slo_ms'), 1)} ms)"
        )
        return best, note, True
    plain = {"max_batch": 1, "max_delay_ms": 0.0, "instances": 1, "threads": threads}
    return plain, "no serving configuration was measured: one image at a time, one instance", False


def _triton_batching(chosen: Chosen, serving: dict[str, Any], measured: bool) -> dict[str, Any]:
    """Triton's batching: the measured serving configuration, else the throughput batch without a delay."""
    if measured:
        return serving
    batch = int(chosen.row("throughput").get("batch_size") or 1)
    return {**serving, "max_batch": max(1, batch)}


def _write_model_side(staging: Path, chosen: Chosen, manifest: dict[str, Any]) -> tuple[ModelFiles, dict[str, Any]]:
    data_config = manifest.get("data_config") or {}
    pre = preprocess_spec(data_config)
    ctx = {"device": chosen.device, "input_size": tuple(pre["input_size"]), "load": load_spec(chosen.run.config)}
    model = write_model(chosen.folder, manifest, staging, ctx)
    (staging / "preprocess.json").write_text(json.dumps(pre, indent=2) + "\n")
    labels, labels_from = class_labels(chosen.run.config, manifest)
    (staging / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    return model, {"preprocess": pre, "labels_from": labels_from, "classes": len(labels)}


def _write_folder(staging: Path, chosen: Chosen, manifest: dict[str, Any]) -> dict[str, Any]:
    model, facts = _write_model_side(staging, chosen, manifest)
    threads = _measured_threads(chosen)
    batch = int(chosen.first.get("accuracy_batch") or chosen.row("throughput").get("batch_size") or 1)
    serving, note, measured = _serving(chosen, threads)
    (staging / "predict.py").write_text(predict_py(model, chosen.recipe, threads, batch))
    (staging / "serve.py").write_text(serve_py(serving, note))
    versions = {**((chosen.first.get("fingerprint") or {}).get("versions") or {}), **(manifest.get("versions") or {})}
    text, notes = requirements(model, versions)
    (staging / "requirements.txt").write_text(text)
    triton = model.runtime in BACKENDS
    if triton:
        meta = {"input_size": facts["preprocess"]["input_size"][1:], "classes": facts["classes"]}
        name = model_name(str((manifest.get("source") or {}).get("arch") or "model"), chosen.recipe)
        write_triton(staging, model, name, _triton_batching(chosen, serving, measured), meta)
    python = str((chosen.first.get("fingerprint") or {}).get("python"))
    docker = dockerfile(model, [*model.files, *SERVED_FILES], python)
    missing = [name for name in dockerfile_copies(docker) if not (staging / name).exists()]
    if missing:
        raise RuntimeError(f"the Dockerfile copies files the export did not write: {', '.join(missing)}")
    (staging / "Dockerfile").write_text(docker)
    version = _optbench_version()
    extra = {"serving": serving if measured else None, "labels_from": facts["labels_from"], "notes": notes}
    card = model_card(chosen, manifest, model, {**extra, "triton": triton, "version": version})
    (staging / "MODEL_CARD.md").write_text(card)
    info = _info(chosen, model, batch, threads, version)
    info["written"] = sorted([p.name for p in staging.iterdir()] + [EXPORT_INFO])  # what --force may replace
    (staging / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return info


def _optbench_version() -> str:
    try:
        return md.version("optbench")
    except md.PackageNotFoundError:
        return "unknown"


def _info(chosen: Chosen, model: ModelFiles, batch: int, threads: int, version: str) -> dict[str, Any]:
    """export.json: what was exported from where, and what ``--check`` compares it with."""
    return {
        "run_id": chosen.run.run_id,
        "run_dir": str(chosen.run.directory),
        "recipe": chosen.recipe,
        "device": chosen.device,
        "runtime": model.runtime,
        "model_files": model.files,
        "exact": model.exact,
        "gpu": model.gpu,
        "batch_size": batch,
        "threads": threads,
        "measured_agreement": chosen.first.get("agreement"),
        "optbench": version,
    }


def export_variant(
    run_dir: str | Path, recipe: str | None = None, out: str | Path | None = None, force: bool = False
) -> Path:
    """Export ``recipe`` of the run in ``run_dir`` (default: the variant its answer named) into ``out`` (default
    ``./<run-id>-<recipe>``); returns the folder. ``force`` replaces a non-empty ``out``."""
    chosen = choose(read_run(Path(run_dir)), recipe)
    return export_chosen(chosen, out, force)


def earlier_export(chosen: Chosen, out: str | Path | None) -> Path | None:
    """The target when it already holds an export of this very run, variant and device (what ``--check`` may check
    without writing it again), else None."""
    from data.paths import absolute

    target = absolute(out) if out is not None else default_out(chosen)
    try:
        info = json.loads((target / EXPORT_INFO).read_text())
    except (OSError, ValueError):
        return None
    same = isinstance(info, dict) and (info.get("run_dir"), info.get("recipe"), info.get("device")) == (
        str(chosen.run.directory),
        chosen.recipe,
        chosen.device,
    )
    return target if same else None


def export_chosen(chosen: Chosen, out: str | Path | None = None, force: bool = False) -> Path:
    from data.paths import absolute

    target = absolute(out) if out is not None else default_out(chosen)
    check_out(target, chosen.run.directory, force)
    manifest = chosen.manifest()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_folder(staging, chosen, manifest)
        staging.chmod(0o755)  # mkdtemp makes it private; the folder is meant to be shared and built into images
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
