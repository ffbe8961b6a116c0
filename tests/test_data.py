"""Data specs: the bundled digits, ImageFolder trees made on the fly, and clear errors for everything else."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import data
from data.errors import DataSpecError

CONFIG = {
    "input_size": [3, 32, 32],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bilinear",
    "crop_pct": 1.0,
}


def test_digits_split_is_fixed_stratified_and_calibration_comes_from_train():
    bundle = data.build("digits", CONFIG, data.LoaderConfig(batch_size=16, calib_size=100, seed=3))
    train_ds, val_ds = bundle.train.dataset, bundle.val.dataset
    assert len(train_ds) + len(val_ds) == 1797 and len(val_ds) == 360
    assert bundle.class_names == tuple(str(i) for i in range(10))
    assert set(np.bincount(val_ds.targets)) <= {35, 36, 37}  # stratified: ~36 per class
    assert bundle.calib.dataset.dataset is train_ds and len(bundle.calib.dataset) == 100
    images, targets = next(iter(bundle.val))
    assert images.shape == (16, 3, 32, 32) and targets.shape == (16,)
    again = data.build("digits", CONFIG, data.LoaderConfig(seed=99))
    assert again.val.dataset.targets == val_ds.targets  # --seed never changes the val split


def _image_folder(root, classes=("cat", "dog"), per_class=3):
    for split in ("train", "val"):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.full((20, 24, 3), 40 * index + i, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_image_folder_fixture_loads_with_model_transform(tmp_path):
    root = _image_folder(tmp_path / "pets")
    bundle = data.build(str(root), CONFIG, data.LoaderConfig(batch_size=4, calib_size=4))
    assert bundle.class_names == ("cat", "dog")
    images, targets = next(iter(bundle.val))
    assert images.shape == (4, 3, 32, 32)
    assert sorted(set(bundle.val.dataset.targets)) == [0, 1]


@pytest.mark.parametrize(
    "spec,match",
    [("imagenet-ish", "unknown data spec"), ("torch/gtsrb", "--data-dir"), ("./nope/folder", "not found")],
)
def test_bad_specs(spec, match):
    with pytest.raises(DataSpecError, match=match):
        data.build(spec, CONFIG)


def test_folder_without_val_split(tmp_path):
    (tmp_path / "only" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataSpecError, match="train/ and val/"):
        data.build(str(tmp_path / "only"), CONFIG)


def test_timm_dataset_name_without_files_says_how_to_fetch(tmp_path):
    with pytest.raises(DataSpecError, match="--download"):
        data.build("torch/cifar10", CONFIG, data_dir=str(tmp_path))


def test_strict_calibration_size():
    with pytest.raises(DataSpecError, match="larger than the train split"):
        data.build("digits", CONFIG, data.LoaderConfig(calib_size=5000), strict_calib_size=True)
