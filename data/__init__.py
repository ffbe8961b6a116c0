"""Datasets and loaders with the model's own transforms: ``data.build(spec, data_config)``."""

from data.loaders import DataBundle, LoaderConfig, build, build_datasets, calibration_subset, eval_transform

__all__ = ["DataBundle", "LoaderConfig", "build", "build_datasets", "calibration_subset", "eval_transform"]
