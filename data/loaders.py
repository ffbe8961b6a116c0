"""Turn a data spec into train / calibration / validation loaders with the model's own eval transform."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from data.errors import DataSpecError

TIMM_DATASET_PREFIXES = ("torch/", "tfds/", "hfds/", "hfids/", "wds/")
VAL_DIR_NAMES = ("val", "validation")
DIGITS = "digits"  # the bundled data spec: the embedded default's data and the calibration data of last resort
CALIB_SIZE = 512  # calibration images from the train split: enough for stable activation ranges
SPEC_HELP = "use 'digits', a folder with train/ and val/ in ImageFolder layout, or a timm name like torch/gtsrb"


@dataclass(frozen=True)
class LoaderConfig:
    """How loaders are built; the profiling command varies these to measure input-pipeline fixes."""

    batch_size: int = 32
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    calib_size: int = CALIB_SIZE
    calib_batch_size: int = 32
    seed: int = 0


@dataclass
class DataBundle:
    """Loaders over one dataset: ``calib`` is drawn from the train split, never from ``val``.

    ``skipped_images`` counts unreadable images left out (``skip_bad_images``)."""

    spec: str
    train: DataLoader
    calib: DataLoader
    val: DataLoader
    class_names: tuple[str, ...]
    transform: Any
    skipped_images: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def eval_transform(data_config: Mapping[str, Any]):
    """timm's eval transform for the model's data config (resize, center crop, normalize)."""
    from timm.data import create_transform

    cfg = {
        k: data_config[k]
        for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        if k in data_config
    }
    cfg["input_size"] = tuple(cfg["input_size"])
    cfg["mean"], cfg["std"] = tuple(cfg["mean"]), tuple(cfg["std"])
    return create_transform(**cfg, is_training=False)


def _image_folder(root: Path, transform, bad: set[str]):
    """torchvision's ImageFolder that ignores hidden folders (``.ipynb_checkpoints``) and files, and ``bad`` ones."""
    from torchvision.datasets import ImageFolder

    from data.images import IMAGE_SUFFIXES

    class Folder(ImageFolder):
        def find_classes(self, directory):
            classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith((".", "__")))
            if not classes:
                raise FileNotFoundError(f"no class folders in {directory}")
            return classes, {name: i for i, name in enumerate(classes)}

    def valid(path: str) -> bool:
        name = os.path.basename(path)
        return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES) and path not in bad

    return Folder(str(root), transform=transform, is_valid_file=valid, allow_empty=True)


def _folder_datasets(root: Path, transform, skip_bad_images: bool) -> tuple[Dataset, Dataset, int]:
    from data.images import bad_images, describe, image_files

    root = root.resolve()
    train_dir = root / "train"
    val_dir = next((root / name for name in VAL_DIR_NAMES if (root / name).is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        raise DataSpecError(
            f"data folder {root} needs train/ and val/ subfolders (ImageFolder layout: split/class/img)"
        )
    bad = bad_images(image_files(train_dir) + image_files(val_dir))
    if bad and not skip_bad_images:
        raise DataSpecError(
            f"{len(bad)} unreadable image(s) under {root}: {describe(bad)}; fix or remove them, or pass "
            "--skip-bad-images to leave them out"
        )
    try:
        train = _image_folder(train_dir, transform, set(bad))
        val = _image_folder(val_dir, transform, set(bad))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataSpecError(f"data folder {root}: {str(exc).splitlines()[0]}") from None
    if train.classes != val.classes:
        raise DataSpecError(f"data folder {root}: train/ and val/ have different class folders")
    return train, val, len(bad)


def _timm_datasets(name: str, data_dir: str | None, download: bool, transform) -> tuple[Dataset, Dataset]:
    from timm.data import create_dataset

    if not data_dir:
        raise DataSpecError(f"data spec {name!r} needs --data-dir (and --download to fetch it once)")
    try:
        train = create_dataset(name, root=data_dir, split="train", download=download, transform=transform)
        val = create_dataset(name, root=data_dir, split="validation", download=download, transform=transform)
    except Exception as exc:  # timm/torchvision raise many types; all mean "this spec does not load"
        hint = "" if download else " (pass --download to fetch it)"
        raise DataSpecError(f"cannot load dataset {name!r} from {data_dir}: {str(exc).splitlines()[0]}{hint}") from None
    return train, val


def _class_names(dataset: Dataset) -> tuple[str, ...]:
    classes = getattr(dataset, "classes", None)
    if classes is None and hasattr(dataset, "reader"):
        classes = getattr(dataset.reader, "class_to_idx", None)
    if isinstance(classes, dict):
        return tuple(sorted(classes, key=classes.get))
    if classes:
        return tuple(str(c) for c in classes)
    return ()


@dataclass
class Datasets:
    """The train and val datasets of a spec, their class names, the transform, and images left out."""

    train: Dataset
    val: Dataset
    class_names: tuple[str, ...]
    transform: Any
    skipped_images: int = 0


def build_datasets(
    spec: str,
    data_config: Mapping[str, Any],
    data_dir: str | None = None,
    download: bool = False,
    skip_bad_images: bool = False,
) -> Datasets:
    """Datasets (train, val), class names and the transform for ``spec``.

    An ImageFolder's images are checked once (:mod:`data.images`): unreadable ones stop here with one line
    naming them, or are left out with ``skip_bad_images``.
    """
    transform = eval_transform(data_config)
    if spec == DIGITS:
        from data.digits import CLASS_NAMES, digits_datasets

        train, val = digits_datasets(transform)
        return Datasets(train, val, CLASS_NAMES, transform)
    if spec.startswith(TIMM_DATASET_PREFIXES):
        train, val = _timm_datasets(spec, data_dir, download, transform)
        return Datasets(train, val, _class_names(train), transform)
    root = Path(spec).expanduser()
    if root.is_dir():
        train, val, skipped = _folder_datasets(root, transform, skip_bad_images)
        return Datasets(train, val, _class_names(train), transform, skipped)
    if root.suffix or "/" in spec or root.exists():
        raise DataSpecError(f"data folder not found: {spec} ({SPEC_HELP})")
    raise DataSpecError(f"unknown data spec {spec!r}: {SPEC_HELP}")


def resolve_spec(spec: str | None) -> str | None:
    """A folder spec made absolute against the current folder (``digits`` and timm names stay as they are), so a
    process started elsewhere reads the same images; a name that is no folder here stays as typed, for the error."""
    if not spec or spec == DIGITS or spec.startswith(TIMM_DATASET_PREFIXES):
        return spec
    from data.paths import absolute

    path = absolute(spec)
    return str(path) if path.exists() else spec


def resolve_dir(path: str | None) -> str | None:
    """``--data-dir`` and other folder options, absolute (None stays None)."""
    from data.paths import absolute

    return str(absolute(path)) if path else None


def check_spec(spec: str, info: Any, data_dir: str | None = None, skip_bad_images: bool = False) -> str | None:
    """Fail fast, before any process starts: the spec loads, it has images, its classes fit the model, and its
    images are readable. Returns a note to print when images were left out, else None."""
    if data_dir and not spec.startswith(TIMM_DATASET_PREFIXES):
        raise DataSpecError(f"--data-dir is the root of timm dataset names (torch/<name>); --data {spec!r} ignores it")
    sets = build_datasets(spec, info.data_config, data_dir, skip_bad_images=skip_bad_images)
    if len(sets.train) == 0 or len(sets.val) == 0:
        raise DataSpecError(f"data spec {spec!r} has an empty train or val split")
    if info.has_weights and sets.class_names and len(sets.class_names) != info.num_classes:
        raise DataSpecError(
            f"data {spec!r} has {len(sets.class_names)} classes but the model has {info.num_classes}; pass --data "
            "with the images the model was trained on"
        )
    if sets.skipped_images:
        return f"note: {sets.skipped_images} unreadable image(s) left out (--skip-bad-images)"
    return None


def _loader(dataset: Dataset, batch_size: int, cfg: LoaderConfig, shuffle: bool) -> DataLoader:
    generator = torch.Generator().manual_seed(cfg.seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=cfg.num_workers,
        pin_memory=cfg.pin_memory,
        persistent_workers=cfg.persistent_workers and cfg.num_workers > 0,
        generator=generator,
    )


def calibration_subset(train: Dataset, size: int, seed: int) -> Subset:
    """A seeded random subset of the train split (never val: calibrating on val would flatter top-1)."""
    n = len(train)
    if size <= 0:
        raise DataSpecError(f"calibration size must be positive, got {size}")
    size = min(size, n)
    indices = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].tolist()
    return Subset(train, indices)


def build(
    spec: str,
    data_config: Mapping[str, Any],
    loader: LoaderConfig | None = None,
    data_dir: str | None = None,
    download: bool = False,
    strict_calib_size: bool = False,
    skip_bad_images: bool = False,
) -> DataBundle:
    """Build a :class:`DataBundle` for ``spec`` with the model's transform.

    ``strict_calib_size`` makes a train split smaller than ``loader.calib_size`` an error instead of
    calibrating on the whole split (quantization asks for it when the user set the size explicitly).
    """
    cfg = loader or LoaderConfig()
    sets = build_datasets(spec, data_config, data_dir, download, skip_bad_images)
    train, val = sets.train, sets.val
    if len(train) == 0 or len(val) == 0:
        raise DataSpecError(f"data spec {spec!r} has an empty train or val split")
    if strict_calib_size and cfg.calib_size > len(train):
        raise DataSpecError(
            f"--calib-size {cfg.calib_size} is larger than the train split of {spec!r} ({len(train)} images)"
        )
    calib = calibration_subset(train, cfg.calib_size, cfg.seed)
    return DataBundle(
        spec=spec,
        train=_loader(train, cfg.batch_size, cfg, shuffle=True),
        calib=_loader(calib, cfg.calib_batch_size, cfg, shuffle=False),
        val=_loader(val, cfg.batch_size, cfg, shuffle=False),
        class_names=tuple(sets.class_names),
        transform=sets.transform,
        skipped_images=sets.skipped_images,
    )
