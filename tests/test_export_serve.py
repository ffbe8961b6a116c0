"""The exported folder as a service and as a preprocessing: serve.py started with uvicorn on 127.0.0.1 answers good
images with the measured labels, bursts of concurrent requests, and hostile input with a one-line 4xx; predict.py's
Pillow + numpy preprocessing equals timm's eval transform. One sweep (fp32, ptq(ort)) is shared by the module."""

from __future__ import annotations

import http.client
import importlib.util
import json
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_export import sweep

RUN_ID = "srv"
UPLOAD_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def exported(tiny_ckpt, tmp_path_factory):
    from bench.export import export_variant
    from bench.export.dataset_files import val_image_files

    base = tmp_path_factory.mktemp("serve")
    run_dir = sweep(tiny_ckpt, base, RUN_ID, ("fp32", "ptq(ort)"))
    folder = export_variant(run_dir, "ptq(ort)", base / "svc")
    config = json.loads((run_dir / "run_config.json").read_text())
    manifest = json.loads((run_dir / "variants" / "ptq_ort_" / "cpu" / "manifest.json").read_text())
    images = val_image_files(config, manifest["data_config"], base / "val")
    expected = np.load(run_dir / "predictions" / "ptq_ort_-cpu.npy")
    return SimpleNamespace(base=base, run_dir=run_dir, folder=folder, images=images, expected=expected)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """(status, parsed JSON) of one request, with a bounded wait."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def multipart(data: bytes, field: str = "file") -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def service(exported):
    """serve.py under uvicorn on a free local port, from a folder outside the checkout, optbench and timm blocked;
    batching on (MAX_BATCH=4, MAX_DELAY_MS=5) over two instances, and a small upload limit."""
    from bench.export.check import blocked_env

    port = _free_port()
    env = blocked_env(exported.base / "blocker")
    env.update(PORT=str(port), HOST="127.0.0.1", MAX_BATCH="4", MAX_DELAY_MS="5", INSTANCES="2")
    env["MAX_UPLOAD_BYTES"] = str(UPLOAD_LIMIT)
    log = exported.base / "serve.log"
    work = exported.base / "work"
    work.mkdir()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(exported.folder / "serve.py")], cwd=work, env=env, stdout=fh, stderr=fh
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if request(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve.py did not answer /health within 90 s"
            time.sleep(0.3)
        yield SimpleNamespace(port=port, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def test_health_says_how_it_serves(service):
    status, body = request(service.port, "GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["model"] == "ptq(ort)"
    assert body["runtime"] == "onnxruntime" and body["classes"] == 10
    assert (body["max_batch"], body["instances"], body["max_delay_ms"]) == (4, 2, 5.0)


def test_images_get_the_measured_labels(service, exported):
    for index in range(12):
        data = exported.images[index].read_bytes()
        if index % 2:
            status, body = request(service.port, "POST", "/predict", data, {"Content-Type": "image/png"})
        else:
            status, body = request(service.port, "POST", "/predict", *multipart(data))
        assert status == 200, body
        assert body["top"][0]["index"] == int(exported.expected[index])
        assert body["top"][0]["label"] == str(int(exported.expected[index]))
        assert len(body["top"]) == 5 and 0.0 <= body["top"][0]["score"] <= 1.0


def test_a_burst_of_concurrent_requests_is_answered(service, exported):
    def one(index: int):
        data = exported.images[index].read_bytes()
        return index, request(service.port, "POST", "/predict", data, {"Content-Type": "image/png"})

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, range(64)))
    for index, (status, body) in answers:
        assert status == 200, body
        assert body["top"][0]["index"] == int(exported.expected[index])


def _bomb_png() -> bytes:
    """A real 8x8 PNG whose header claims 30000x30000 pixels (CRC fixed up, so only the size gives it away)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    at = data.index(b"IHDR")
    header = bytearray(data[at : at + 17])
    header[4:12] = struct.pack(">II", 30000, 30000)
    return data[:at] + bytes(header) + struct.pack(">I", zlib.crc32(bytes(header))) + data[at + 21 :]


def test_hostile_input_gets_a_one_line_4xx_and_the_service_goes_on(service, exported):
    good = exported.images[0].read_bytes()
    png = {"Content-Type": "image/png"}
    cases = {
        "not an image": (b"hello, this is text" * 10, png, 415),
        "truncated image": (good[: len(good) // 2], png, 422),
        "decompression bomb": (_bomb_png(), png, 413),
        "over the upload limit": (b"\x89PNG" + bytes(2 * UPLOAD_LIMIT), png, 413),
        "multipart over the limit": (*multipart(bytes(2 * UPLOAD_LIMIT)), 413),
        "wrong content type": (good, {"Content-Type": "application/json"}, 415),
        "no content type": (good, {"Content-Type": ""}, 415),
        "multipart without a file": (*multipart(good, field="other"), 400),
        "broken multipart": (b"--x\r\n", {"Content-Type": "multipart/form-data; boundary=zz"}, 400),
        "two files in one form": (*_two_files(good), 400),
        "empty body": (b"", png, 400),
    }
    for name, (body, headers, expected) in cases.items():
        status, answer = request(service.port, "POST", "/predict", body, headers)
        assert status == expected, (name, status, answer)
        detail = answer["detail"]
        assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail, (name, detail)
        if name == "two files in one form":
            assert "one image per request" in detail and "HTTPException" not in detail, detail
        status, answer = request(service.port, "POST", "/predict", good, png)
        assert status == 200 and answer["top"][0]["index"] == int(exported.expected[0]), name
    assert request(service.port, "GET", "/health")[0] == 200
    assert "Traceback" not in service.log.read_text()


def _two_files(data: bytes) -> tuple[bytes, dict]:
    body, headers = multipart(data)
    boundary = headers["Content-Type"].split("boundary=")[1]
    first, _ = body.rsplit(f"--{boundary}--".encode(), 1)
    again, _ = multipart(data)
    part = again.split(b"\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
    return first + f"--{boundary}\r\n".encode() + part + f"\r\n--{boundary}--\r\n".encode(), headers


def _exported_predict(folder: Path):
    """The folder's own predict.py, imported (its runtime, onnxruntime, is installed here)."""
    spec = importlib.util.spec_from_file_location(f"exported_predict_{uuid.uuid4().hex}", folder / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _odd_images():
    from PIL import Image

    rng = np.random.default_rng(0)
    for width, height in ((7, 13), (100, 33), (33, 100), (37, 36), (64, 64), (231, 5)):
        for mode in ("RGB", "L", "RGBA", "P"):
            pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            yield Image.fromarray(pixels).convert(mode).convert("RGB")


@pytest.mark.parametrize(
    "arch,overrides",
    [
        ("resnet10t", {}),  # 224 px, bicubic, crop_pct 0.95
        ("resnet10t", {"input_size": (3, 24, 40), "crop_pct": 0.9}),  # not square: resize keeping the ratio
        ("resnet10t", {"crop_mode": "squash", "interpolation": "lanczos"}),
        ("resnet10t", {"crop_mode": "border", "input_size": (3, 30, 26), "interpolation": "bilinear"}),
        ("mobilenetv3_small_050", {"crop_pct": 1.0, "interpolation": "nearest"}),
    ],
)
def test_preprocess_json_reproduces_timms_eval_transform(exported, arch, overrides):
    import timm
    from timm.data import create_transform, resolve_data_config

    from bench.export.preprocess import preprocess_spec

    config = resolve_data_config(overrides, model=timm.create_model(arch, pretrained=False))
    transform = create_transform(**config, is_training=False)
    module = _exported_predict(exported.folder)
    spec = json.loads(json.dumps(preprocess_spec(config)))  # as predict.py reads it back from preprocess.json
    for image in _odd_images():
        np.testing.assert_allclose(module.preprocess(image, spec), transform(image).numpy(), rtol=0, atol=1e-6)


def test_val_files_reach_the_tensors_the_run_measured(exported):
    """The digits val split written as PNG files, through the exported preprocessing, gives the loader's tensors."""
    from data.loaders import build_datasets

    module = _exported_predict(exported.folder)
    cfg = json.loads((exported.folder / "preprocess.json").read_text())
    manifest = json.loads((exported.run_dir / "variants" / "ptq_ort_" / "cpu" / "manifest.json").read_text())
    val = build_datasets("digits", manifest["data_config"]).val
    for index in range(0, len(val), 17):
        tensor = val[index][0].numpy()
        np.testing.assert_array_equal(module.preprocess(module.open_image(exported.images[index]), cfg), tensor)


def _with_serve_row(exported, tmp_path: Path, best: dict) -> Path:
    results = tmp_path / "results"
    run_dir = results / "runs" / RUN_ID
    shutil.copytree(exported.run_dir, run_dir)
    row = {"variant": "ptq(ort)", "recipe": "ptq(ort)", "device": "cpu", "status": "ok", "scenario": "serve"}
    with open(run_dir / "results.jsonl", "a") as fh:
        fh.write(json.dumps({**row, "serve_best": best}) + "\n")
    return run_dir


def test_the_measured_serving_configuration_is_what_serve_and_triton_use(exported, tmp_path):
    from google.protobuf import text_format

    from bench.export import export_variant

    best = {"max_batch": 8, "max_delay_ms": 2, "instances": 3, "threads": 1, "rate": 350.5, "p99_ms": 12.5}
    out = export_variant(_with_serve_row(exported, tmp_path, {**best, "slo_ms": 20}), "ptq(ort)", tmp_path / "svc")
    serve = (out / "serve.py").read_text()
    assert 'MAX_BATCH = setting("MAX_BATCH", 8, int, 1)' in serve
    assert 'INSTANCES = setting("INSTANCES", 3, int, 1)' in serve
    assert "rate 350.5 req/s at p99 12.5 ms (SLO 20.0 ms)" in serve
    card = (out / "MODEL_CARD.md").read_text()
    assert "350.5 requests/s" in card and "SLO of 20.0 ms" in card
    model_config_pb2 = pytest.importorskip(
        "tritonclient.grpc.model_config_pb2", reason="tritonclient (dev extra) parses Triton configs"
    )
    text = next((out / "triton").glob("*/config.pbtxt")).read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert config.max_batch_size == 8 and config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.instance_group[0].count == 3


def test_a_malformed_serving_row_falls_back_to_one_image_at_a_time(exported, tmp_path):
    from bench.export import export_variant

    run_dir = _with_serve_row(exported, tmp_path, {"max_batch": "many", "instances": 0})
    out = export_variant(run_dir, "ptq(ort)", tmp_path / "svc")
    assert 'MAX_BATCH = setting("MAX_BATCH", 1, int, 1)' in (out / "serve.py").read_text()
    assert "No serving configuration was measured" in (out / "MODEL_CARD.md").read_text()


def test_predict_py_answers_every_readable_image_and_names_each_bad_one(exported, tmp_path):
    """A user's list with a missing file, a text file and a truncated JPEG among good images: one error line for
    each bad one, exit 2, no traceback, and the good ones get the same answers as when classified alone."""
    user = tmp_path / "user"
    user.mkdir()
    for i in (0, 1):
        shutil.copy(exported.images[i], user / f"good{i}{exported.images[i].suffix}")
    good = sorted(p.name for p in user.iterdir())
    (user / "notes.txt").write_text("not an image")
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(user / "whole.jpg", quality=95)
    (user / "cut.jpg").write_bytes((user / "whole.jpg").read_bytes()[:1500])  # a download that stopped halfway
    (user / "whole.jpg").unlink()
    script = str(exported.folder / "predict.py")
    names = [good[0], "missing.jpg", "notes.txt", "cut.jpg", good[1]]

    def run(*args: str):
        return subprocess.run([sys.executable, script, *args, "--json", "--batch-size", "4"], cwd=user,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    proc = run(*names)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = proc.stderr.strip().splitlines()
    assert [e.split(":")[1].strip() for e in errors] == ["missing.jpg", "notes.txt", "cut.jpg"], proc.stderr
    assert all(e.startswith("error: ") and "cannot read it as an image" in e for e in errors)
    answers = json.loads(proc.stdout)
    assert [a["image"] for a in answers] == names and ["top" in a for a in answers] == [1, 0, 0, 0, 1]
    alone = run(*good)
    assert alone.returncode == 0, alone.stderr
    assert [a["top"] for a in json.loads(alone.stdout)] == [answers[0]["top"], answers[4]["top"]]


@pytest.mark.parametrize(
    "env", [{"INSTANCES": "abc"}, {"INSTANCES": "0"}, {"MAX_DELAY_MS": "-5"}, {"MAX_UPLOAD_BYTES": "-1"}]
)
def test_a_bad_setting_stops_serve_py_with_one_line(exported, env):
    """A typo in the environment of a container: one line and a failed start, not a traceback or a service that
    refuses every request."""
    from bench.export.check import blocked_env

    full = {**blocked_env(exported.base / "blocker"), **env, "PORT": str(_free_port()), "HOST": "127.0.0.1"}
    proc = subprocess.run([sys.executable, str(exported.folder / "serve.py")], cwd=exported.base, env=full,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    ((name, value),) = env.items()
    assert proc.returncode == 1 and proc.stderr.strip() == proc.stderr.strip().splitlines()[-1], proc.stderr
    assert proc.stderr.startswith(f"error: {name}={value!r}: must be") and "Traceback" not in proc.stderr


def test_predict_py_refuses_options_that_mean_nothing(exported):
    script = str(exported.folder / "predict.py")
    for args in (["--top-k", "0"], ["--batch-size", "0"], ["--time", "-1"], ["--time", "nan"]):
        proc = subprocess.run([sys.executable, script, str(exported.images[0]), *args], cwd=exported.base,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2 and "must be" in proc.stderr and "Traceback" not in proc.stderr, (args, proc)


def test_a_compiled_models_short_batches_are_padded_as_they_were_measured(exported):
    """STATIC_SHAPES: a short batch runs at the next power of two up to the service's largest batch, and the
    service warms exactly those sizes (the serving scenario pads the same way)."""
    module = _exported_predict(exported.folder)
    module.STATIC_SHAPES = True
    seen: list[int] = []
    classifier = module.Classifier.__new__(module.Classifier)
    classifier.pad_to, classifier.model = 16, lambda batch: (seen.append(len(batch)), np.zeros((len(batch), 10)))[1]
    assert classifier.batch_sizes() == [1, 2, 4, 8, 16]
    out = classifier.logits([np.zeros((3, 8, 8), np.float32)] * 3)
    assert seen == [4] and out.shape == (3, 10)
    module.STATIC_SHAPES = False
    classifier.logits([np.zeros((3, 8, 8), np.float32)] * 3)
    assert seen == [4, 3] and classifier.batch_sizes() == list(range(1, 17))
