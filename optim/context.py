"""The one way a :class:`~optim.artifact.BuildContext` is made, from a run configuration.

A recipe built by ``python -m optim.quantize``, by a sweep's measurement process, by ``pytest bench`` or by
``python -m bench.profile`` must be the same variant: the same calibration subset, seed, threads, data and
options. Every one of them asks this function for its context.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from optim.artifact import BuildContext

if TYPE_CHECKING:
    from bench.config import RunConfig
    from models.checkpoint import LoadedModel

DATA_BATCH = 32  # loader batch for calibration, fine-tuning and the accuracy pass


def data_spec_for(run: RunConfig, loaded: LoadedModel) -> str | None:
    return run.data_spec or loaded.info.data_spec


def build_context(
    run: RunConfig,
    loaded: LoadedModel,
    workdir: str | Path,
    bundle: Any = None,
    options: dict[str, Any] | None = None,
) -> BuildContext:
    """The context for building any recipe of ``run`` from ``loaded``; ``bundle`` reuses data already built."""
    import data
    from models.errors import InputError

    spec = data_spec_for(run, loaded)
    loader_cfg = data.LoaderConfig(batch_size=DATA_BATCH, calib_size=run.calib_size, seed=run.seed)

    def data_factory():
        if not spec:
            raise InputError("this recipe needs data (calibration or fine-tuning); pass --data")
        return data.build(spec, loaded.info.data_config, loader_cfg, run.data_dir, skip_bad_images=run.skip_bad_images)

    largest = max((s.batch_size for s in run.scenarios), default=16)
    return BuildContext(
        loaded=loaded,
        device=run.device,
        workdir=Path(workdir),
        threads=run.threads,
        seed=run.seed,
        quick=run.quick,
        calib_size=run.calib_size,
        data_factory=data_factory,
        data_spec=spec,
        options={"throughput_batch": largest, "max_batch": max(largest, 1), **(options or {})},
        _data=bundle,
    )
