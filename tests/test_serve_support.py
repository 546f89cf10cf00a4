"""Helpers of the `clipadapt serve` tests (no tests here): a real uvicorn server on an ephemeral
loopback port in a thread, and plain-urllib requests whose HTTP errors are answers too."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
import uuid

from PIL import Image

from clipadapt.serve import ServedModel, ServeSettings, create_app
from clipadapt.serve.runner import Server


class Running:
    """create_app(model, settings, keys) served by uvicorn on 127.0.0.1, port 0, in a daemon
    thread; `ready()` waits for the warm-up forward. Use as a context manager or call stop()."""

    def __init__(self, model: ServedModel, settings: ServeSettings | None = None, keys=None,
                 forward_threads: int | None = None, log_level: str = "warning"):
        self.settings = settings or ServeSettings()
        self.app = create_app(model, self.settings, keys, forward_threads=forward_threads)
        self.server = Server(self.app, "127.0.0.1", 0, self.settings, log_level=log_level).start()
        self.url = self.server.url

    def ready(self, timeout: float = 30.0) -> Running:
        deadline = time.monotonic() + timeout
        while not self.app.state.batcher.ready:
            assert time.monotonic() < deadline, "the warm-up forward did not finish"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 30.0,
            method: str | None = None, with_headers: bool = False):
    """(status, parsed JSON or text) of one request (and the response headers with
    `with_headers`); HTTP errors are answers too."""
    req = urllib.request.Request(url, data=data, headers=headers or {},
                                 method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, body, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, body, got = exc.code, exc.read(), exc.headers
    kind = got.get("Content-Type", "")
    answer = json.loads(body) if kind.startswith("application/json") else body.decode()
    return (status, answer, got) if with_headers else (status, answer)


def multipart(files: list[tuple[str, bytes]], field: str = "image") -> tuple[bytes, dict]:
    """A multipart/form-data body with one file part per (name, bytes)."""
    boundary = uuid.uuid4().hex
    chunks = []
    for name, data in files:
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                      f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png_bytes(size=(40, 30), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def hold_forwards(model: ServedModel, monkeypatch) -> tuple[threading.Event, threading.Event, threading.Event]:
    """Make `model`'s forwards wait, once `hold` is set, until `release` is set (a forward
    then sets `entered`): (hold, release, entered) for tests of a busy service."""
    hold, release, entered = threading.Event(), threading.Event(), threading.Event()
    forward = model.probabilities

    def held(batch):
        if hold.is_set():
            entered.set()
            release.wait(30)
        return forward(batch)

    monkeypatch.setattr(model, "probabilities", held)
    return hold, release, entered
