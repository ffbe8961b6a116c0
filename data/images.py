"""Images a command will read, checked once before any measurement starts.

A truncated JPEG or a zero-byte PNG in ``val/`` used to surface as a decoder error halfway through the fp32
reference's accuracy pass, ending the whole sweep, and the truncated JPEG's error did not name the file. Each
image of an ImageFolder split is opened and decoded once here (JPEGs at 1/8 scale: the decoder still reads the
whole stream), and the verdict is cached by path, size and modification time, so the next command, and every
measurement process of this one, pays almost nothing.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CACHE_NAME = "image-check.json"


def _cache_path() -> Path:
    from data.paths import cache_dir

    return cache_dir() / CACHE_NAME


def _load_cache(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, cache: dict[str, list]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(path)
    except OSError:  # a read-only results folder only costs the next command the same check again
        pass


def image_problem(path: str | Path) -> str | None:
    """Why the image cannot be read (one line), or None when it decodes."""
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types; every one means "cannot use this image"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return text[:120]
    return None


def image_files(root: str | Path) -> list[str]:
    """Every image file under ``root`` that an ImageFolder would read (hidden folders and files left out)."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(
            os.path.join(folder, f)
            for f in sorted(files)
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)
        )
    return out


def bad_images(paths: Iterable[str]) -> dict[str, str]:
    """``{path: problem}`` for the images that cannot be read, using and refreshing the cache."""
    cache_file = _cache_path()
    cache = _load_cache(cache_file)
    bad: dict[str, str] = {}
    changed = False
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as exc:
            bad[path] = exc.strerror or "cannot stat"
            continue
        key = os.path.abspath(path)
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = cache.get(key)
        if entry and entry[:2] == stamp:
            problem = entry[2]
        else:
            problem = image_problem(path)
            cache[key] = [*stamp, problem]
            changed = True
        if problem:
            bad[path] = problem
    if changed:
        _save_cache(cache_file, cache)
    return bad


def describe(bad: dict[str, str], limit: int = 3) -> str:
    shown = "; ".join(f"{path} ({why})" for path, why in list(bad.items())[:limit])
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return shown + more
