"""Datasets and loaders with the model's own transforms: ``data.build(spec, data_config)``."""

from data.loaders import (
    DataBundle,
    Datasets,
    LoaderConfig,
    build,
    build_datasets,
    calibration_subset,
    check_spec,
    eval_transform,
    resolve_dir,
    resolve_spec,
)

__all__ = [
    "DataBundle",
    "Datasets",
    "LoaderConfig",
    "build",
    "build_datasets",
    "calibration_subset",
    "check_spec",
    "eval_transform",
    "resolve_dir",
    "resolve_spec",
]
