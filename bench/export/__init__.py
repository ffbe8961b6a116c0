"""``python -m bench.export RUN_ID``: a measured variant as a folder a service can use without optbench or timm.

The folder holds the model in its runtime's own format, the measured preprocessing (``preprocess.json``), the labels,
``predict.py``, a FastAPI ``serve.py``, ``requirements.txt``, a ``Dockerfile``, a ``MODEL_CARD.md`` and, for ONNX and
OpenVINO variants, a Triton model repository (docs/export.md). :func:`export_variant` is what a sweep's ``--export``
calls; ``--check`` proves the folder gives the measured predictions on its own (:mod:`bench.export.check`).
"""

from __future__ import annotations

from pathlib import Path


def export_variant(
    run_dir: str | Path, recipe: str | None = None, out: str | Path | None = None, force: bool = False
) -> Path:
    """Export ``recipe`` (default: the variant the run's answer named) of the run in ``run_dir`` into ``out``
    (default ``./<run-id>-<recipe>``); returns the folder. Bad input raises :class:`data.errors.InputError`."""
    from bench.export.writer import export_variant as export

    return export(run_dir, recipe, out, force)


def check_export_target(out: str | Path, run_dir: str | Path) -> None:
    """Refuse, before a sweep starts, an ``--export`` folder the export would refuse after it (not empty, inside the
    run, the folder one works in): an hour of measuring should not end in "not exported"."""
    from bench.export.writer import check_out

    replace = "name a new folder (python -m bench.export RUN_ID --out DIR --force replaces one after the run)"
    check_out(Path(out).expanduser(), Path(run_dir), False, "--export", replace)  # named as typed


__all__ = ["check_export_target", "export_variant"]
