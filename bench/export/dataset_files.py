"""What an export takes from the run's data: the class names (labels.json) and, for ``--check``, the val split as image
files in val order.

The check must feed predict.py what the measurement's data loader fed its transform, or agreement proves nothing.
An ImageFolder's val files are used as they are (the loader decoded them with Pillow and ``convert('RGB')``, as
predict.py does). Datasets held in memory, such as the bundled digits, are written as PNG files of the very images the
loader handed to its transform (``convert('RGB')`` of each array): PNG is lossless, so decoding a file gives those
pixels back and the exported preprocessing starts from the same image the measured one did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data.errors import InputError


def load_spec(config: dict[str, Any]):
    """The run's LoadSpec (its model factory, for a variant of the user's own class), or None for an older run."""
    from models.spec import LoadSpec

    try:
        return LoadSpec.from_dict(config["load"])
    except (KeyError, InputError):
        return None


def _datasets(config: dict[str, Any], data_config: dict[str, Any]):
    from data.loaders import build_datasets

    spec = config.get("data_spec")
    if not spec:
        raise InputError("the run names no data spec")
    return build_datasets(
        spec, data_config, config.get("data_dir"), skip_bad_images=bool(config.get("skip_bad_images"))
    )


def class_labels(config: dict[str, Any], manifest: dict[str, Any]) -> tuple[list[str], str]:
    """(one name per class index, where the names came from): the checkpoint's own class names, else the data's,
    else the indices."""
    import models

    classes = int((manifest.get("source") or {}).get("num_classes") or 0)
    spec = load_spec(config)
    try:
        names = list(models.load(spec).info.class_names) if spec is not None and not spec.random_init else []
    except (InputError, OSError):
        names = []
    if classes and len(names) == classes:
        return [str(n) for n in names], "the checkpoint's class names"
    try:
        names = list(_datasets(config, manifest["data_config"]).class_names)
    except (InputError, OSError):
        names = []
    if classes and len(names) == classes:
        return [str(n) for n in names], f"the class folders of the run's data ({config.get('data_spec')})"
    return [str(i) for i in range(classes)], "class indices (neither the checkpoint nor the data names the classes)"


def val_image_files(config: dict[str, Any], data_config: dict[str, Any], folder: Path) -> list[Path]:
    """The val split as image files, in val order; in-memory images are written into ``folder`` as PNG."""
    from PIL import Image

    val = _datasets(config, data_config).val
    samples = getattr(val, "samples", None)
    if samples is not None and all(Path(str(s[0])).is_file() for s in samples[:1]):
        return [Path(str(path)) for path, _ in samples]
    if not hasattr(val, "transform"):
        raise InputError(f"the val split of {config.get('data_spec')!r} cannot be written as image files")
    val.transform = None  # the images as the loader handed them to its transform
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(len(val)):
        image = val[index][0]
        if not isinstance(image, Image.Image):
            raise InputError(f"the val split of {config.get('data_spec')!r} does not hold Pillow images")
        path = folder / f"{index:06d}.png"
        image.save(path)
        paths.append(path)
    return paths
