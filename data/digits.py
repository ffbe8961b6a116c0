"""scikit-learn's bundled 8x8 digits as an RGB image dataset: the embedded default needs no download."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

CLASS_NAMES = tuple(str(i) for i in range(10))
# The split never depends on the user's --seed: val must be the same images in every run we compare.
SPLIT_SEED = 0
VAL_FRACTION = 0.2


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (train_images, train_labels, val_images, val_labels) as uint8 HxW arrays, stratified and fixed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.clip(digits.images * 16.0, 0, 255).astype(np.uint8)  # sklearn stores 0..16 intensities
    x_train, x_val, y_train, y_val = train_test_split(
        images, digits.target, test_size=VAL_FRACTION, stratify=digits.target, random_state=SPLIT_SEED
    )
    return x_train, y_train, x_val, y_val


class DigitsDataset(Dataset):
    """PIL images so the model's own timm transform (resize, normalize) runs exactly as on real photos."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None) -> None:
        self.images = images
        self.targets = [int(t) for t in labels]
        self.transform = transform
        self.classes = list(CLASS_NAMES)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index], mode="L").convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def digits_datasets(transform: Callable | None) -> tuple[DigitsDataset, DigitsDataset]:
    x_train, y_train, x_val, y_val = digits_split()
    return DigitsDataset(x_train, y_train, transform), DigitsDataset(x_val, y_val, transform)
