"""The one way a :class:`~optim.artifact.BuildContext` is made: from :class:`BuildSettings`.

A recipe built by ``python -m optim.quantize``, by a sweep's measurement process, by ``pytest bench`` or by
``python -m bench.profile`` must be the same variant: the same calibration subset, seed, threads, data and
options. The producer commands build their settings from their options (:mod:`optim.options`); a run configuration
of ``bench`` hands out its own (``RunConfig.build_settings``). Producers see only the context, never a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.loaders import CALIB_SIZE
from optim.artifact import BuildContext

if TYPE_CHECKING:
    from models.checkpoint import LoadedModel

DATA_BATCH = 32  # loader batch for calibration, fine-tuning and the accuracy pass
# With random weights there is no accuracy to keep and INT8 speed does not depend on the ranges, so calibrating on
# CALIB_SIZE images would only cost time.
RANDOM_INIT_CALIB_SIZE = 64


def default_calib_size(has_weights: bool) -> int:
    return CALIB_SIZE if has_weights else RANDOM_INIT_CALIB_SIZE


@dataclass(frozen=True)
class BuildSettings:
    """What building a recipe depends on besides the checkpoint: data, calibration, seed, threads, device."""

    device: str = "cpu"
    threads: int = 1
    seed: int = 0
    quick: bool = False
    calib_size: int = CALIB_SIZE
    data_spec: str | None = None
    data_dir: str | None = None
    skip_bad_images: bool = False
    max_drop: float = 1.0  # top-1 budget in points (accuracy-controlled builds: ptq(ov,accuracy_control=1))
    max_batch: int = 16  # the largest batch the variant will be called with (static-shape backends build for it)


def build_context(
    settings: BuildSettings,
    loaded: LoadedModel,
    workdir: str | Path,
    bundle: Any = None,
    options: dict[str, Any] | None = None,
) -> BuildContext:
    """The context for building any recipe from ``loaded``; ``bundle`` reuses data already built."""
    import data
    from data.errors import InputError

    spec = settings.data_spec or loaded.info.data_spec
    loader_cfg = data.LoaderConfig(batch_size=DATA_BATCH, calib_size=settings.calib_size, seed=settings.seed)

    def data_factory():
        if not spec:
            raise InputError("this recipe needs data (calibration or fine-tuning); pass --data")
        return data.build(
            spec, loaded.info.data_config, loader_cfg, settings.data_dir, skip_bad_images=settings.skip_bad_images
        )

    largest = max(1, settings.max_batch)
    return BuildContext(
        loaded=loaded,
        device=settings.device,
        workdir=Path(workdir),
        threads=settings.threads,
        seed=settings.seed,
        quick=settings.quick,
        calib_size=settings.calib_size,
        max_drop=settings.max_drop,
        data_factory=data_factory,
        data_spec=spec,
        options={"throughput_batch": largest, "max_batch": largest, **(options or {})},
        _data=bundle,
    )
