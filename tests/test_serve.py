"""`clipadapt serve`: the JSON API against `clipadapt predict`, its limits and errors, the
command itself, and a bounded load test on loopback (figures printed, run with -s to see
them). Batching, keys, metrics and probes: tests/test_serve_*.py."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_report_support import make_run, make_task, save_run
from test_serve_support import Running, multipart, png_bytes, request
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.methods import build_method
from clipadapt.report.gallery import read_predictions
from clipadapt.serve import ServedModel, ServeSettings
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec

RUNNER = CliRunner()
LIMITS = ServeSettings(max_upload_mb=0.05, max_batch=4, max_pixels=200 * 200, request_timeout=2.0)


# ------------------------------------------------------------------ fixtures and helpers
@pytest.fixture(scope="module")
def run(tmp_path_factory, micro_backbone):
    return make_run(tmp_path_factory.mktemp("serve") / "run", micro_backbone)


@pytest.fixture(scope="module")
def model(run):
    return ServedModel(run)


@pytest.fixture(scope="module")
def service(model):
    with Running(model, LIMITS) as running:
        yield running.ready()


@pytest.fixture(scope="module")
def images(run) -> list[Path]:
    return sorted((run / "images").glob("*.png"))


def predict_cli(run: Path, paths: list[Path], out: Path) -> pd.DataFrame:
    result = RUNNER.invoke(app, ["predict", *map(str, paths), "-c", str(run), "-o", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return read_predictions(out)  # class names as text ("true" stays a class, not a bool)


def assert_same_as_cli(answer: dict, row: pd.Series, task: TaskSpec) -> None:
    for attr in task.attributes:
        got = answer["attributes"][attr.name]
        assert got["predicted"] == row[attr.name]
        for cls in attr.classes:
            assert got["probabilities"][cls] == pytest.approx(float(row[f"{attr.name}:p({cls})"]), rel=1e-6, abs=1e-7)
        assert sum(got["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------ the API
def test_healthz_info_page_and_unknown_paths(service, model):
    assert request(service.url + "/healthz") == (200, {"status": "ok"})
    status, info = request(service.url + "/api/info")
    assert status == 200 and info["method"] == "mhadapter" and info["backbone"]["name"] == "clipadapt-micro"
    assert [a["name"] for a in info["attributes"]] == ["weather", "pano_status"]
    assert info["attributes"][0]["classes"] == list(model.method.task.attributes[0].classes)
    assert info["limits"]["max_batch"] == 4 and info["overlays"] is True
    status, page = request(service.url + "/")
    assert status == 200 and '<input type="file"' in page and "api/predict" in page
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched from elsewhere
    status, answer = request(service.url + "/nope")
    assert status == 404 and "/api/predict" in answer["error"]
    status, answer = request(service.url + "/nope", b"x")
    assert status == 404 and answer["error"] == "No such endpoint: POST /nope. Use POST /api/predict."
    status, answer = request(service.url + "/api/predict")  # a GET where a POST belongs
    assert status == 405 and "not allowed" in answer["error"]


def test_one_raw_image_matches_clipadapt_predict(service, run, images, model, tmp_path):
    table = predict_cli(run, images[:1], tmp_path / "p.csv")
    status, answer = request(service.url + "/api/predict?name=img0.png", images[0].read_bytes(),
                             {"Content-Type": "image/png"})
    assert status == 200 and answer["method"] == "mhadapter" and answer["multilabel"] is False
    (result,) = answer["predictions"]
    assert result["ok"] and result["name"] == "img0.png" and "overlays" not in result
    assert_same_as_cli(result, table.iloc[0], model.method.task)


def test_a_batch_keeps_order_and_names_and_matches_predict(service, run, images, model, tmp_path):
    batch = images[1:4]
    table = predict_cli(run, batch, tmp_path / "p.csv")
    body, headers = multipart([(p.name, p.read_bytes()) for p in batch])
    status, answer = request(service.url + "/api/predict", body, headers)
    assert status == 200
    assert [r["name"] for r in answer["predictions"]] == [p.name for p in batch]
    for result, (_, row) in zip(answer["predictions"], table.iterrows()):
        assert_same_as_cli(result, row, model.method.task)


def test_overlays_are_png_data_uris_of_the_model_view(service, images):
    body, headers = multipart([(images[0].name, images[0].read_bytes())])
    status, answer = request(service.url + "/api/predict?overlay=1", body, headers)
    assert status == 200
    overlays = answer["predictions"][0]["overlays"]
    assert set(overlays) == {"weather", "pano_status"}
    for uri in overlays.values():
        assert uri.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert image.format == "PNG" and image.size == (224, 224)
        assert np.asarray(image).std() > 0  # a picture, not a blank square


def test_a_multilabel_run_answers_probability_and_decision(tmp_path, micro_backbone, images):
    task = TaskSpec((Attribute("Hat", BINARY_CLASSES, template="A pedestrian wearing a hat"),
                     Attribute("Female", BINARY_CLASSES, template="A woman or girl")), multilabel=True)
    params = {"fusion_width": 32, "fusion_heads": 4, "global_prompts": 2, "group_prompts": 2, "text_prompts": 2,
              "drop_path": 0.0}
    par = save_run(tmp_path / "par", build_method("promptpar", micro_backbone, task, params), threshold=0.45)
    running = Running(ServedModel(par), LIMITS)
    try:  # (a threshold per request under concurrency: tests/test_serve_batching.py)
        _, info = request(running.url + "/api/info")
        assert info["multilabel"] is True and info["threshold"] == 0.45
        status, answer = request(running.url + "/api/predict", images[0].read_bytes())
        assert status == 200
        result = answer["predictions"][0]
        assert result["threshold"] == 0.45 and set(result["attributes"]) == {"Hat", "Female"}
        for got in result["attributes"].values():
            assert 0.0 <= got["probability"] <= 1.0 and got["present"] == (got["probability"] > 0.45)
        _, lower = request(running.url + "/api/predict?threshold=0", images[0].read_bytes())
        assert all(a["present"] for a in lower["predictions"][0]["attributes"].values())
        status, bad = request(running.url + "/api/predict?threshold=2", images[0].read_bytes())
        assert status == 400 and "threshold" in bad["error"]
        _, pictures = request(running.url + "/api/predict?overlay=1", images[0].read_bytes())
        assert list(pictures["predictions"][0]["overlays"]) == [
            "part 1 (rows 0-1)", "part 2 (rows 0-2)", "part 3 (rows 1-3)", "part 4 (rows 2-3)"]  # 4x4 patch grid
    finally:
        running.stop()


# ------------------------------------------------------------------ bad requests
def test_oversized_upload_is_413_with_a_json_message(service):
    big = bytes(np.random.default_rng(0).integers(0, 256, 80_000, dtype=np.uint8))  # 78 KB > 0.05 MB
    status, answer = request(service.url + "/api/predict", b"\x89PNG\r\n\x1a\n" + big, {"Content-Type": "image/png"})
    assert status == 413 and "--max-upload-mb" in answer["error"] and "0.05 MB" in answer["error"]


def test_too_many_images_and_too_many_pixels_are_413(service, images):
    body, headers = multipart([(p.name, p.read_bytes()) for p in images[:5]])
    status, answer = request(service.url + "/api/predict", body, headers)
    assert status == 413 and "More than 4 images" in answer["error"] and "--max-batch" in answer["error"]
    status, answer = request(service.url + "/api/predict?name=huge.png", png_bytes((300, 200)))
    assert status == 413 and "huge.png" in answer["error"] and "300x200" in answer["error"]


@pytest.mark.parametrize("name, data, status, words", [
    ("notes.txt", b"just some text, not a picture", 415, "looks like text"),
    ("doc.jpg", b"%PDF-1.7 pretending to be a jpeg", 415, "PDF"),
    ("cut.png", None, 400, "truncated or corrupt"),
    ("empty.png", b"", 400, "Empty request body"),
])
def test_non_images_and_corrupt_images_are_named(service, name, data, status, words):
    if data is None:
        data = png_bytes()[:60]  # a real PNG header, then nothing
    got, answer = request(service.url + f"/api/predict?name={name}", data, {"Content-Type": "image/jpeg"})
    assert got == status and words in answer["error"]
    if data:
        assert name in answer["error"]


def raw_post(service, headers: str) -> tuple[int, dict]:
    """(status, JSON answer) of a POST /api/predict written by hand, without a body."""
    host, port = service.server.socket.getsockname()[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_post_without_a_body_says_the_body_is_empty(service):
    # `curl -X POST URL` sends neither Content-Length nor a body: that is an empty body, not a chunked upload
    status, answer = raw_post(service, "")
    assert status == 400 and answer["error"].startswith("Empty request body: send an image as the body")
    status, answer = raw_post(service, "Transfer-Encoding: chunked\r\n")
    assert status == 411 and answer["error"] == "Content-Length is required (chunked uploads are not accepted)."


def test_one_bad_file_in_a_batch_refuses_the_batch_naming_it(service, images):
    body, headers = multipart([(images[0].name, images[0].read_bytes()), ("virus.exe", b"MZ\x90\x00binary")])
    status, answer = request(service.url + "/api/predict", body, headers)
    assert status == 415 and "virus.exe" in answer["error"]


def test_a_form_without_files_or_boundary_is_400(service):
    boundary = "b0undary"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--{boundary}--\r\n'.encode()
    status, answer = request(service.url + "/api/predict", body,
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 400 and "holds no files" in answer["error"]
    status, answer = request(service.url + "/api/predict", body, {"Content-Type": "multipart/form-data"})
    assert status == 400 and "without a boundary" in answer["error"]


def test_a_strip_is_refused_in_its_answer_like_predicts_row(service):
    # decodes fine, but predict's loader refuses sides that differ more than 100x: ok false, 200
    status, answer = request(service.url + "/api/predict?name=strip.png", png_bytes((199, 1)))
    assert status == 200
    (result,) = answer["predictions"]
    assert result["ok"] is False and "strip" in result["error"] and "strip.png" in result["error"]


def test_a_calibrated_run_with_8_clients_at_once_answers_each_as_alone(tmp_path, micro_backbone, images):
    """Eight clients at once, two forwards in flight (`--workers 2`): each gets the
    probabilities the same request gets alone (the temperature included)."""
    method = build_method("mhadapter", micro_backbone, make_task())
    method.set_temperatures([3.0, 0.5])
    settings = ServeSettings(workers=2, queue=16, batch_wait_ms=2.0)
    payloads = [p.read_bytes() for p in images[:4]]

    with Running(ServedModel(save_run(tmp_path / "calibrated", method)), settings) as running:
        def ask(i: int) -> dict:
            status, answer = request(running.url + "/api/predict", payloads[i % len(payloads)])
            assert status == 200, answer
            return answer["predictions"][0]["attributes"]

        alone = [ask(i) for i in range(len(payloads))]
        barrier = threading.Barrier(8)

        def together(i: int) -> list[dict]:
            barrier.wait()
            return [ask(i) for _ in range(3)]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(together, range(8)))
        assert request(running.url + "/api/info")[1]["limits"]["workers"] == 2
    wrong = [(i, k) for i, per in enumerate(answers) for k, got in enumerate(per) if got != alone[i % len(payloads)]]
    assert not wrong, f"{len(wrong)} of {8 * 3} concurrent answers differ from the answer alone: {wrong[:6]}"


def test_a_stalled_client_gets_408_after_the_timeout(model):
    with Running(model, ServeSettings(request_timeout=1.0)) as running:
        host, port = running.server.socket.getsockname()[:2]
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
            started = time.monotonic()
            data = sock.recv(4096)  # the server gives up on the body and says so
            waited = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in data, data
    assert 0.5 < waited < 8


def test_too_many_connections_answer_503(model):
    with Running(model, ServeSettings(max_connections=1, request_timeout=3.0)) as running:
        host, port = running.server.socket.getsockname()[:2]
        with socket.create_connection((host, port), timeout=10):  # holds the only connection, says nothing
            time.sleep(0.2)
            status, _ = request(running.url + "/healthz")
        assert status == 503  # uvicorn's own answer (text): the app is not reached
        deadline = time.monotonic() + 5  # free again once the server has seen the connections close
        while (status := request(running.url + "/healthz")[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200


def test_the_serve_command_serves_until_interrupted(run):
    env = {**os.environ, "COLUMNS": "400"}  # rich must not wrap the line with the address
    # Default SIGINT in the child: an ignored SIGINT is inherited through exec (an earlier
    # test's library can leave it ignored in this process), and Python then installs no
    # KeyboardInterrupt handler, so Ctrl-C would never reach the command.
    command = [sys.executable, "-m", "clipadapt.cli.main", "serve", "-c", str(run), "--port", "0", "--device", "cpu",
               "--workers", "3", "--batch-size", "4", "--no-pad-batches"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = process.stdout.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
        assert found, line
        assert request(found.group(1) + "/healthz") == (200, {"status": "ok"})
        limits = request(found.group(1) + "/api/info")[1]["limits"]
        assert limits["workers"] == 3 and limits["batch_size"] == 4 and limits["pad_batches"] is False
        process.send_signal(signal.SIGINT)
        code, rest = process.wait(timeout=60), process.stdout.read()  # 7-9 s seen on a loaded machine
        assert code == 0 and "stopped" in rest, rest
    finally:
        if process.poll() is None:
            process.kill()


def test_serve_command_errors_are_one_line(tmp_path, run):
    result = RUNNER.invoke(app, ["serve", "-c", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a clipadapt run folder" in result.output
    result = RUNNER.invoke(app, ["serve", "-c", str(run), "--api-key-file", str(tmp_path / "keys.txt")])
    assert result.exit_code == 2 and "keys.txt does not exist" in result.output
    result = RUNNER.invoke(app, ["serve", "-c", str(run), "--pad-batches", "--no-pad-batches"])
    assert result.exit_code == 2 and "contradict" in result.output


def test_an_open_host_without_a_key_warns_and_a_taken_port_is_one_line(run):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = RUNNER.invoke(app, ["serve", "-c", str(run), "--host", "0.0.0.0", "--port", str(port)],
                               env={"CLIPADAPT_API_KEY": ""})
    assert result.exit_code == 2, result.output
    assert "warning:" in result.output and "no API key" in result.output
    assert f"Cannot listen on 0.0.0.0:{port}" in result.output


def test_a_missing_web_library_is_one_line(monkeypatch):
    import clipadapt.serve.extras as extras
    from clipadapt.errors import ClipAdaptError

    real = extras.find_spec
    monkeypatch.setattr(extras, "find_spec", lambda name: None if name == "multipart" else real(name))
    with pytest.raises(ClipAdaptError, match=r"needs python-multipart .*pip install 'clipadapt\[serve\]'"):
        extras.require_serve_libraries()


# ------------------------------------------------------------------ load
def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status here: resident memory cannot be measured")


def test_load_on_loopback_has_no_errors_and_bounded_memory(service, images):
    clients, per_client = 8, 10
    payloads = [p.read_bytes() for p in images]

    def one(i: int) -> tuple[int, float]:
        started = time.perf_counter()
        status, _ = request(service.url + "/api/predict", payloads[i % len(payloads)], {"Content-Type": "image/png"})
        return status, time.perf_counter() - started

    for i in range(8):  # warm-up: first-call allocations are not growth
        assert one(i)[0] == 200
    before = rss_mb()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(one, range(clients * per_client)))
    elapsed = time.perf_counter() - started
    growth = rss_mb() - before
    statuses = [s for s, _ in answers]
    latencies = np.array([t for _, t in answers]) * 1000
    print(f"\nload test: {clients} clients x {per_client} requests = {len(answers)} in {elapsed:.2f} s, "
          f"{len(answers) / elapsed:.1f} requests/s, latency p50 {np.percentile(latencies, 50):.0f} ms, "
          f"p95 {np.percentile(latencies, 95):.0f} ms, errors {sum(s != 200 for s in statuses)}, "
          f"RSS {before:.0f} MB -> {before + growth:.0f} MB (growth {growth:+.1f} MB)")
    assert statuses == [200] * len(answers)
    assert elapsed < 120
    assert growth < 100
