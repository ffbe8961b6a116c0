"""Classify images with the exported model: ``python predict.py IMAGE [IMAGE ...] [--top-k K] [--json]``.

Needs only the runtime in requirements.txt, numpy and Pillow. The preprocessing below is the transform the model was
measured with (preprocess.json); change it and the accuracy in MODEL_CARD.md no longer holds. In Python::

    from predict import predict
    predict(["cat.jpg", "dog.png"], k=5)  # one list of {"label", "index", "score"} per image
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

# --- settings ---
RECIPE = "fp32"
RUNTIME = "none"
THREADS = 1
BATCH_SIZE = 1
STATIC_SHAPES = False  # a compiled model: every new batch size compiles again, so short batches are padded
RUNTIME_OPTIONS: dict = {}
# --- end settings ---

# --- runtime ---


class Model:
    """Replaced by the runtime's loader when the folder is written."""

    def __init__(self, folder: Path, threads: int, options: dict) -> None:
        raise NotImplementedError("this template has no runtime")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# --- end runtime ---

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def load_json(name: str, folder: Path = HERE):
    return json.loads((folder / name).read_text())


def open_image(path: str | Path) -> Image.Image:
    """Decoded as the measured data loader decoded it: Pillow, converted to RGB, no EXIF rotation."""
    with Image.open(path) as image:
        return image.convert("RGB")


def _resized_size(width: int, height: int, cfg: dict) -> tuple[int, int]:
    """(width, height) after the resize step of preprocess.json."""
    target_h, target_w = cfg["scale_size"]
    if cfg["resize"] == "squash":
        return target_w, target_h
    if cfg["resize"] == "shorter_side":
        short, long = min(width, height), max(width, height)
        new_short, new_long = target_h, int(target_h * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)
    ratio_h, ratio_w = height / target_h, width / target_w
    longest = 1.0 if cfg["resize"] == "longest_keep_ratio" else 0.0
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(width / ratio), round(height / ratio)


def _crop_or_pad(image: Image.Image, height: int, width: int, fill: tuple[int, ...]) -> Image.Image:
    """Center crop to (height, width); a smaller image is first padded around its center with ``fill``."""
    if width > image.width or height > image.height:
        canvas_w, canvas_h = max(width, image.width), max(height, image.height)
        canvas = Image.new(image.mode, (canvas_w, canvas_h), fill)
        canvas.paste(image, ((canvas_w - image.width) // 2, (canvas_h - image.height) // 2))
        image = canvas
    top = int(round((image.height - height) / 2.0))
    left = int(round((image.width - width) / 2.0))
    return image.crop((left, top, left + width, top + height))


def preprocess(image: Image.Image, cfg: dict) -> np.ndarray:
    """One RGB image -> a float32 array shaped (channels, height, width), normalized as measured."""
    size = _resized_size(image.width, image.height, cfg)
    if size != image.size:
        image = image.resize(size, RESAMPLING[cfg["interpolation"]])
    _, height, width = cfg["input_size"]
    image = _crop_or_pad(image, height, width, tuple(cfg["pad_fill"]))
    array = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(cfg["mean"], dtype=np.float32)
    std = np.asarray(cfg["std"], dtype=np.float32)
    return np.ascontiguousarray(((array - mean) / std).transpose(2, 0, 1))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class Classifier:
    """The model, its preprocessing and its labels, loaded once."""

    def __init__(self, folder: Path = HERE, threads: int = THREADS) -> None:
        self.cfg = load_json("preprocess.json", folder)
        self.labels = load_json("labels.json", folder)
        self.model = Model(folder, threads, RUNTIME_OPTIONS)
        self.pad_to = BATCH_SIZE  # a compiled model's largest batch (a service: its MAX_BATCH)

    def batch_sizes(self) -> list[int]:
        """Every batch size this classifier runs: a compiled model one graph per size, warmed by the service."""
        return sorted({self.padded(n) for n in range(1, max(1, self.pad_to) + 1)})

    def padded(self, count: int) -> int:
        """A compiled model's batch for ``count`` images: the next power of two, at most ``pad_to`` (as measured)."""
        if not STATIC_SHAPES or count >= self.pad_to:
            return count
        return min(self.pad_to, 1 << (count - 1).bit_length())

    def logits(self, arrays: list[np.ndarray]) -> np.ndarray:
        """Logits for preprocessed images; a compiled model gets its short batches padded with copies."""
        count = len(arrays)
        arrays = [arrays[i % count] for i in range(self.padded(count))]
        return np.asarray(self.model(np.stack(arrays)))[:count]

    def top(self, logits: np.ndarray, k: int = 5) -> list[list[dict]]:
        probabilities = softmax(logits)
        out = []
        for row, probs in zip(logits, probabilities, strict=True):
            order = np.argsort(-row, kind="stable")[: max(1, k)]
            out.append([{"label": self.labels[i], "index": int(i), "score": float(probs[i])} for i in order])
        return out

    def predict(self, images: list, k: int = 5, batch_size: int = BATCH_SIZE) -> list[list[dict]]:
        """Top-k labels for each image (a path or a PIL image), in batches of ``batch_size``."""
        results: list[list[dict]] = []
        for start in range(0, len(images), max(1, batch_size)):
            chunk = images[start : start + max(1, batch_size)]
            pictures = [open_image(i) if isinstance(i, str | Path) else i.convert("RGB") for i in chunk]
            results += self.top(self.logits([preprocess(p, self.cfg) for p in pictures]), k)
        return results


_CLASSIFIER: Classifier | None = None


def predict(images: list, k: int = 5) -> list[list[dict]]:
    """Top-k labels for each image path or PIL image (the model is loaded on the first call)."""
    global _CLASSIFIER
    if _CLASSIFIER is None:
        _CLASSIFIER = Classifier()
    return _CLASSIFIER.predict(list(images), k)


def time_model(seconds: float, warmup: int = 10) -> dict:
    """Batch-1 model calls on one fixed input, back to back after a warm-up: the figure a benchmark's batch-1 p50 is
    (decoding and preprocessing left out, as they were when the model was measured)."""
    import time

    classifier = Classifier()
    batch = np.random.default_rng(0).standard_normal((1, *classifier.cfg["input_size"])).astype(np.float32)
    for _ in range(warmup):
        classifier.model(batch)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 20:
        start = time.perf_counter()
        classifier.model(batch)
        times.append(time.perf_counter() - start)
    return {"p50_ms": float(np.median(times) * 1e3), "calls": len(times), "threads": THREADS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Classify images with {RECIPE} ({RUNTIME}).")
    parser.add_argument("images", nargs="*", help="image files")
    parser.add_argument("--list", help="a text file naming one image per line (read after the images above)")
    parser.add_argument("--top-k", type=int, default=5, help="labels per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"images per call (default {BATCH_SIZE})")
    parser.add_argument("--json", action="store_true", help="one JSON list on stdout instead of text lines")
    parser.add_argument("--time", type=float, metavar="SECONDS", help="time the model alone at batch 1: its p50")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be at least 1")
    if args.time is not None and not 0 < args.time < float("inf"):
        parser.error("--time must be a positive number of seconds")
    if args.time:
        json.dump(time_model(args.time), sys.stdout)
        print()
        return 0
    try:
        listed = Path(args.list).read_text().splitlines() if args.list else []
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"--list {args.list}: {exc}")
    paths = [p for p in list(args.images) + listed if p.strip()]
    if not paths:
        parser.error("name at least one image")
    answers = classify_files(Classifier(), paths, args.top_k, args.batch_size)
    for answer in answers:
        if "error" in answer:
            print(f"error: {answer['image']}: {answer['error']}", file=sys.stderr)
        elif not args.json:
            print(f"{answer['image']}: " + ", ".join(f"{t['label']} ({t['score']:.3f})" for t in answer["top"]))
    if args.json:
        json.dump(answers, sys.stdout)
        print()
    return 2 if any("error" in a for a in answers) else 0


def classify_files(classifier: Classifier, paths: list[str], k: int, batch_size: int) -> list[dict]:
    """``{"image", "top"}`` for each file, or ``{"image", "error"}`` for one that cannot be read as an image: a bad
    file costs its own answer, not its batch's."""
    answers: list[dict] = []
    for start in range(0, len(paths), max(1, batch_size)):
        chunk = [{"image": path} for path in paths[start : start + max(1, batch_size)]]
        readable = []
        for answer in chunk:
            try:
                readable.append((answer, preprocess(open_image(answer["image"]), classifier.cfg)))
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                first = (str(exc).splitlines() or [""])[0]
                answer["error"] = f"cannot read it as an image ({type(exc).__name__}: {first})"
        if readable:
            tops = classifier.top(classifier.logits([array for _, array in readable]), k)
            for (answer, _), top in zip(readable, tops, strict=True):
                answer["top"] = top
        answers += chunk
    return answers


if __name__ == "__main__":
    sys.exit(main())
