"""Datasets and loaders with the model's own transforms: ``data.build(spec, data_config)``."""

from data.loaders import (
    CALIB_SIZE,
    DIGITS,
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
    "CALIB_SIZE",
    "DIGITS",
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
