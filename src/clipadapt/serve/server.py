"""`clipadapt serve`: a small HTTP service on the standard library's ThreadingHTTPServer.

Routes: GET / (the web page), GET /healthz, GET /api/info, POST /api/predict.
Every error is JSON {"error": "..."} with a status that says whose fault it was.
Limits: body size (413, checked from Content-Length before reading), images per
request (413), pixels per image (413), socket timeout per request, connections at
once (503) and inference slots + queue (503). docs/serve.md documents the API.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from clipadapt.serve.gate import Busy, InferenceGate
from clipadapt.serve.model import ServedModel
from clipadapt.serve.page import page_html
from clipadapt.serve.uploads import EMPTY_BODY, Upload, UploadError, decode, split_body

log = logging.getLogger("clipadapt.serve")
CLOSE_GRACE = 5.0  # seconds server_close waits for requests in progress
DRAIN_LIMIT = 256 * 2**20  # bytes of an oversized body read and dropped; past this the socket is just closed


@dataclass(frozen=True)
class ServeSettings:
    """Limits of the service (defaults suit one CPU machine)."""

    max_upload_mb: float = 10.0  # whole request body
    max_batch: int = 16  # images per request
    max_pixels: int = 40_000_000  # per image, checked before decoding (decompression bombs)
    request_timeout: float = 30.0  # seconds a client may stall while sending or receiving
    running: int = 1  # requests inside the model at once (`--workers`); each gets its own answer
    waiting: int = 16  # requests queued for the model; more get 503
    max_connections: int = 64  # connections handled at once; more get 503

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class ClipAdaptServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that holds the model, the limits and a connection cap."""

    daemon_threads = True  # Ctrl-C does not wait for slow clients
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], model: ServedModel, settings: ServeSettings):
        self.model, self.settings = model, settings
        self.gate = InferenceGate(settings.running, settings.waiting, wait_timeout=settings.request_timeout)
        self._connections = threading.BoundedSemaphore(settings.max_connections)
        self._handlers: set[threading.Thread] = set()
        self._handlers_lock = threading.Lock()
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def process_request(self, request, client_address):
        # a thread per connection, but never more than max_connections of them
        if not self._connections.acquire(blocking=False):
            _refuse(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        with self._handlers_lock:
            self._handlers.add(threading.current_thread())
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()
            with self._handlers_lock:
                self._handlers.discard(threading.current_thread())

    def server_close(self):
        """Close the socket, then give requests in progress CLOSE_GRACE seconds to finish:
        a handler thread still running while the interpreter exits can abort the process
        (seen as 'terminate called without an active exception' after Ctrl-C)."""
        super().server_close()
        deadline = time.monotonic() + CLOSE_GRACE
        with self._handlers_lock:
            running = list(self._handlers)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))


def _refuse(request: socket.socket) -> None:
    body = json.dumps({"error": "Too many connections at once; retry in a moment."}).encode()
    try:
        request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                        b"Retry-After: 1\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    except OSError:
        pass


class Handler(BaseHTTPRequestHandler):
    """Routes of the service; `timeout` makes a stalled client's socket raise."""

    server: ClipAdaptServer
    server_version = "clipadapt"

    def setup(self):
        self.timeout = self.server.settings.request_timeout  # StreamRequestHandler applies it to the socket
        super().setup()

    # ------------------------------------------------------------------ routes
    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/":
            self._send(200, page_html().encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path == "/api/info":
            self._json(200, {**self.server.model.info(), "limits": self._limits()})
        else:
            self._json(404, {"error": f"No such page: {path}. Try /, /healthz, /api/info or POST /api/predict."})

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path != "/api/predict":
            self._json(404, {"error": f"No such endpoint: POST {url.path}. Use POST /api/predict."})
            return
        try:
            self._json(200, self._predict(parse_qs(url.query)))
        except UploadError as exc:
            self._json(exc.status, {"error": str(exc)})
        except Busy as exc:
            self._json(503, {"error": f"The model is busy ({exc}); retry in a moment."}, {"Retry-After": "1"})
        except (socket.timeout, TimeoutError):
            self.close_connection = True  # the client stopped sending; nobody is listening
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the service; the log has the traceback
            log.exception("prediction failed")
            self._json(500, {"error": f"Internal error while predicting ({type(exc).__name__}: {exc})."})

    def _predict(self, query: dict[str, list[str]]) -> dict:
        settings = self.server.settings
        body = self._read_body(settings.max_upload_bytes, settings.max_upload_mb)
        uploads = split_body(body, self.headers.get("Content-Type", ""), settings.max_batch)
        if len(uploads) == 1 and uploads[0].name == "upload" and query.get("name"):
            uploads = [Upload(query["name"][0], uploads[0].data)]
        for upload in uploads:
            decode(upload, settings.max_pixels)  # every file checked before the model is touched
        overlays = _flag(query, "overlay")
        threshold = _threshold(query)
        with self.server.gate.slot():
            results = self.server.model.predict(uploads, overlays=overlays, threshold=threshold)
        model = self.server.model
        return {"method": model.method.name, "multilabel": model.method.task.multilabel, "predictions": results}

    def _read_body(self, limit: int, limit_mb: float) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raise UploadError(411, "Content-Length is required (chunked uploads are not accepted).")
            raise UploadError(400, EMPTY_BODY)  # a POST without Content-Length sends no body
        try:
            size = int(length)
        except ValueError:
            raise UploadError(400, f"Content-Length is not a number: {length!r}.") from None
        if size > limit:
            self._discard(size)
            raise UploadError(413, f"The upload is {size / 2**20:.3g} MB; at most {limit_mb:g} MB are accepted "
                                   "(--max-upload-mb). Send a smaller image or fewer images.")
        body = self.rfile.read(size)
        if len(body) < size:
            raise UploadError(400, f"The body ended after {len(body)} of {size} bytes (Content-Length); resend it.")
        return body

    def _discard(self, size: int) -> None:
        """Read and drop an oversized body (up to DRAIN_LIMIT bytes), so the client, still
        sending, gets the 413 answer rather than a connection reset."""
        self.close_connection = True
        left = min(size, DRAIN_LIMIT)
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except (OSError, socket.timeout):
            pass

    # ------------------------------------------------------------------ responses
    def _limits(self) -> dict:
        s = self.server.settings
        return {"max_upload_mb": s.max_upload_mb, "max_batch": s.max_batch, "max_pixels": s.max_pixels,
                "request_timeout_s": s.request_timeout, "workers": s.running, "queue": s.waiting}

    def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        try:
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True  # the client left; nothing to tell it

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.info("%s %s", self.address_string(), format % args)


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["0"])[-1].lower() in ("1", "true", "yes", "on")


def _threshold(query: dict[str, list[str]]) -> float | None:
    if "threshold" not in query:
        return None
    raw = query["threshold"][-1]
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise UploadError(400, f"threshold must be a number in [0, 1], got {raw!r}.")
    return value


def make_server(model: ServedModel, host: str = "127.0.0.1", port: int = 8000,
                settings: ServeSettings | None = None) -> ClipAdaptServer:
    """A bound, not yet running server (port 0 picks a free port: see `server.url`).
    Run it with `serve_forever()`; stop it with `shutdown()` then `server_close()`."""
    return ClipAdaptServer((host, port), model, settings or ServeSettings())
