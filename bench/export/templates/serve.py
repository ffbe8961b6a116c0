"""HTTP service for the exported model: ``POST /predict`` with one image, ``GET /health``.

Run ``python serve.py`` (port ``$PORT``, default 8080) or ``uvicorn serve:app``. Send the image as the raw body
(``Content-Type: image/jpeg``, ``image/png``, ...) or as multipart form data in a field named ``file``::

    curl -F file=@cat.jpg http://127.0.0.1:8080/predict
    curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8080/predict

Requests are grouped into batches of up to MAX_BATCH images, waiting at most MAX_DELAY_MS for a batch to fill, over
INSTANCES copies of the model with THREADS threads each: the serving configuration measured for this variant (see
MODEL_CARD.md), each overridable by an environment variable of the same name. Bad input gets a 4xx answer with a
one-line reason: a body that is not an image (415), a truncated or damaged image (422), more than MAX_IMAGE_PIXELS
pixels (413), more than MAX_UPLOAD_BYTES bytes (413), another content type (415).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import predict  # noqa: E402 - the loader and the preprocessing beside this file


def setting(name: str, default: float, kind: type, low: float) -> float:
    """``default``, or the environment variable ``name`` when set: a number of ``kind``, at least ``low``. A typo
    stops the service at start with one line instead of a traceback or a service that cannot answer."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value < float("inf"):
        sys.exit(f"error: {name}={text!r}: must be {'an integer' if kind is int else 'a number'} >= {low}")
    return value


# --- settings ---
MAX_BATCH = setting("MAX_BATCH", 1, int, 1)
MAX_DELAY_MS = setting("MAX_DELAY_MS", 0.0, float, 0)
INSTANCES = setting("INSTANCES", 1, int, 1)
THREADS = setting("THREADS", 1, int, 1)
SERVING_NOTE = "no serving configuration was measured: one image at a time, one instance"
# --- end settings ---

MAX_UPLOAD_BYTES = setting("MAX_UPLOAD_BYTES", 10 * 2**20, int, 1)
MAX_IMAGE_PIXELS = setting("MAX_IMAGE_PIXELS", 40_000_000, int, 1)
TOP_K = setting("TOP_K", 5, int, 1)
DRAIN_LIMIT = 4 * MAX_UPLOAD_BYTES  # an oversized body is read this far so the client can read the 413
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class Rejected(Exception):
    """Bad input: answered with ``status`` and a one-line ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def decode(data: bytes) -> Image.Image:
    """The image in ``data`` as RGB, or Rejected: nothing a client sends reaches the model undecoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise Rejected(413, f"image is {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels")
                return image.convert("RGB")
    except Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Rejected(413, f"image has more than {MAX_IMAGE_PIXELS} pixels") from None
    except UnidentifiedImageError:
        raise Rejected(415, "the body is not an image Pillow can read") from None
    except Exception as exc:  # noqa: BLE001 - every decoder error of a damaged file is the client's input
        raise Rejected(422, f"the image cannot be decoded ({type(exc).__name__}: truncated or damaged)") from None


async def read_body(request: Request) -> bytes:
    """The request body, at most MAX_UPLOAD_BYTES; a larger one is refused with 413."""
    length = request.headers.get("content-length", "")
    too_big = Rejected(413, f"the upload is over the {MAX_UPLOAD_BYTES}-byte limit (MAX_UPLOAD_BYTES)")
    if length.isdigit() and int(length) > DRAIN_LIMIT:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_LIMIT:
            break
        if size <= MAX_UPLOAD_BYTES:
            chunks.append(chunk)
    if size > MAX_UPLOAD_BYTES:
        raise too_big
    if size == 0:
        raise Rejected(400, "the body is empty; send an image")
    return b"".join(chunks)


async def form_file(request: Request, body: bytes) -> bytes:
    """The bytes of the ``file`` field of a multipart body already read (and size-checked)."""

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive).form(max_files=1, max_fields=8)
    except Exception as exc:  # noqa: BLE001 - a malformed multipart body is the client's input
        detail = str(getattr(exc, "detail", "") or exc).strip().splitlines()[:1] or [type(exc).__name__]
        raise Rejected(400, f"the multipart body cannot be read: {detail[0]} (send one image per request)") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise Rejected(400, "the multipart body has no file field named 'file'")
    data = await upload.read()
    await form.close()
    return data


class Batcher:
    """Groups concurrent requests into batches: up to MAX_BATCH images, waiting at most MAX_DELAY_MS."""

    def __init__(self, classifiers: list[predict.Classifier]) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(max_workers=len(classifiers))
        self.tasks = [asyncio.create_task(self._serve(c)) for c in classifiers]

    async def submit(self, array: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((array, future))
        return await future

    async def _collect(self) -> list:
        items = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + MAX_DELAY_MS / 1000
        while len(items) < MAX_BATCH:
            wait = deadline - asyncio.get_running_loop().time()
            try:
                items.append(self.queue.get_nowait() if wait <= 0 else await asyncio.wait_for(self.queue.get(), wait))
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
        return items

    async def _serve(self, classifier: predict.Classifier) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            try:
                logits = await loop.run_in_executor(self.pool, classifier.logits, [a for a, _ in items])
            except Exception as exc:  # noqa: BLE001 - the waiting requests get the error, the loop goes on
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), row in zip(items, logits, strict=True):
                if not future.done():
                    future.set_result(row)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    classifiers = [predict.Classifier(threads=THREADS) for _ in range(max(1, INSTANCES))]
    first = classifiers[0]
    for classifier in classifiers:  # compiled models compile here, not in the first request
        classifier.pad_to = MAX_BATCH
        for size in classifier.batch_sizes() if predict.STATIC_SHAPES else sorted({1, max(1, MAX_BATCH)}):
            classifier.logits([np.zeros(first.cfg["input_size"], dtype=np.float32)] * size)
    app.state.classifier = first
    app.state.batcher = Batcher(classifiers)
    yield
    app.state.batcher.close()


app = FastAPI(title=f"{predict.RECIPE} ({predict.RUNTIME})", lifespan=lifespan)


@app.exception_handler(Rejected)
async def rejected(request: Request, exc: Rejected) -> JSONResponse:
    return JSONResponse({"detail": exc.reason}, status_code=exc.status)


@app.exception_handler(Exception)
async def failed(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"the model failed on this request ({type(exc).__name__})"}, status_code=500)


@app.get("/health")
async def health() -> dict:
    return {
        "status": "ok",
        "model": predict.RECIPE,
        "runtime": predict.RUNTIME,
        "classes": len(app.state.classifier.labels),
        "max_batch": MAX_BATCH,
        "max_delay_ms": MAX_DELAY_MS,
        "instances": INSTANCES,
        "threads": THREADS,
        "serving": SERVING_NOTE,
    }


@app.post("/predict")
async def predict_image(request: Request) -> dict:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data" and not kind.startswith("image/") and kind != "application/octet-stream":
        raise Rejected(415, f"send an image body (image/*) or multipart/form-data with a 'file' field, not {kind!r}")
    body = await read_body(request)
    data = await form_file(request, body) if kind == "multipart/form-data" else body
    image = await asyncio.to_thread(decode, data)
    array = await asyncio.to_thread(predict.preprocess, image, app.state.classifier.cfg)
    logits = await app.state.batcher.submit(array)
    return {"model": predict.RECIPE, "top": app.state.classifier.top(logits[None], TOP_K)[0]}


if __name__ == "__main__":
    uvicorn.run(app, host=os.environ.get("HOST", "0.0.0.0"), port=setting("PORT", 8080, int, 0))
