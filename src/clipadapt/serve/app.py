"""The ASGI app of `clipadapt serve`: routes, errors, keys, metrics and the batcher, all built
by `create_app` (nothing process-wide), so uvicorn (the CLI) and Ray Serve (`@serve.ingress`)
can each host one, and two apps can live in one process.

Routes: GET / (the web page), GET /healthz (live), GET /readyz (ready: model warmed up),
GET /api/info, POST /api/predict, GET /metrics (Prometheus), and FastAPI's /openapi.json
and /docs. Every error is JSON {"error": "..."} with a status that says whose fault it was.
docs/serve.md documents the API.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Sequence

from fastapi import FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from clipadapt.serve.batching import Batcher, Busy
from clipadapt.serve.body import read_uploads
from clipadapt.serve.forwards import Forwards
from clipadapt.serve.keys import KeyCheck
from clipadapt.serve.metrics import MetricsMiddleware, ServeMetrics
from clipadapt.serve.model import ServedModel
from clipadapt.serve.page import page_html
from clipadapt.serve.settings import ServeSettings
from clipadapt.serve.uploads import Decoded, Upload, UploadError, decode_for_model

log = logging.getLogger("clipadapt.serve")
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
KEY_NEEDED = ("This service needs an API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.")
UPLOAD_BODY = {  # what /docs shows for POST /api/predict: the body is read by hand, not declared
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    },
}


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """The one shape of every error answer."""
    return JSONResponse({"error": message}, status_code=status, headers={**NO_STORE, **(headers or {})})


def create_app(model: ServedModel, settings: ServeSettings | None = None, keys: Sequence[str] | None = None,
               forward_threads: int | None = None) -> FastAPI:
    """The service for `model` under `settings`; with `keys`, every /api/* route and /metrics
    need one of them. The batcher starts (and warms the model up) on the app's startup
    event or its first request, inside the event loop that serves it.
    `forward_threads`: see `forwards.Forwards` (default: torch's thread count)."""
    settings = settings or ServeSettings()
    check = KeyCheck(keys or ())
    forwards = Forwards(model.probabilities, model.blank(), settings.batch_size, pad=settings.pad_batches,
                        workers=settings.workers, threads=forward_threads, cpu=model.device.type == "cpu")
    metrics = ServeMetrics()
    batcher = Batcher(forwards, settings.batch_size, settings.batch_wait_ms, settings.workers, settings.queue,
                      settings.request_timeout, on_batch=metrics.batch, on_queue=metrics.queue.set)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            await batcher.close()

    app = FastAPI(title="clipadapt", summary=f"Predictions of the {model.method.name} run '{model.run_dir.name}'",
                  version="1", lifespan=lifespan)
    app.state.model, app.state.settings, app.state.batcher, app.state.metrics = model, settings, batcher, metrics
    guarded = [Security(_key_guard(check))] if check.required else []

    # ------------------------------------------------------------------ open routes
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html(), headers=NO_STORE)

    @app.get("/healthz", summary="Live: 200 while the process serves")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"}, headers=NO_STORE)

    @app.get("/readyz", summary="Ready: 200 once the model is loaded and warmed up, else 503")
    async def readyz() -> JSONResponse:
        batcher.start()
        metrics.ready.set(1 if batcher.ready else 0)
        if not batcher.ready:
            return error(503, "Not ready: the model is warming up; retry in a moment.", {"Retry-After": "1"})
        return JSONResponse({"status": "ready"}, headers=NO_STORE)

    # ------------------------------------------------------------------ API routes
    @app.get("/api/info", dependencies=guarded, summary="What the service predicts, and its limits")
    async def info() -> JSONResponse:
        return JSONResponse({**model.info(), "limits": settings.limits()}, headers=NO_STORE)

    @app.post("/api/predict", dependencies=guarded, openapi_extra={"requestBody": UPLOAD_BODY},
              summary="Predict every attribute of one or more images")
    async def predict(request: Request,
                      overlay: str | None = Query(None, description="1: add attention overlays (PNG data URIs)"),
                      threshold: str | None = Query(None, description="a multi-label run's decision threshold"),
                      name: str | None = Query(None, description="the name of a raw-body image in the answer"),
                      ) -> JSONResponse:
        try:
            uploads = await read_uploads(request, settings, name)
            cut = _threshold(threshold)
            drawn = _flag(overlay) and model.overlays_available
            decoded, tensors = await run_in_threadpool(_prepare, model, uploads, settings.max_pixels, drawn)
            found = iter(await batcher.predict(tensors))
            probs = [next(found) if d.image is not None else None for d in decoded]
            answers = model.answers([d.name for d in decoded], probs, [d.error for d in decoded], cut)
            if drawn and tensors:
                await _add_overlays(answers, decoded)
            return JSONResponse({"method": model.method.name, "multilabel": model.multilabel, "predictions": answers},
                                headers=NO_STORE)
        except UploadError as exc:
            return error(exc.status, str(exc))
        except Busy as exc:
            return error(503, f"The model is busy ({exc}); retry in a moment.", {"Retry-After": "1"})
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the service; the log has the traceback
            log.exception("prediction failed")
            return error(500, f"Internal error while predicting ({type(exc).__name__}: {exc}).")

    async def _add_overlays(answers: list[dict], decoded: list[Decoded]) -> None:
        pictured = [(answer, d) for answer, d in zip(answers, decoded) if d.image is not None]
        # drawing overlays runs the model once more: it takes a forward slot like a batch
        drawn = await batcher.run_beside(model.overlays, [d.full for _, d in pictured])
        for (answer, _), pictures in zip(pictured, drawn):
            answer["overlays"] = pictures

    @app.get("/metrics", dependencies=guarded, summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        metrics.ready.set(1 if batcher.ready else 0)
        return Response(metrics.render(), media_type=metrics.content_type, headers=NO_STORE)

    # ------------------------------------------------------------------ errors and middleware
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error(404, _not_found(request))
        if exc.status_code == 405:
            return error(405, f"{request.method} {request.url.path} is not allowed; see /docs for the API.",
                         {"Allow": (exc.headers or {}).get("Allow", "")})
        return error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
        return error(400, f"Invalid request ({problems}).")

    metrics.routes = {route.path for route in app.routes}
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _key_guard(check: KeyCheck):
    """The dependency that refuses a request without a valid key (401)."""
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: KEY")

    async def require_key(credentials: HTTPAuthorizationCredentials | None = Security(bearer),
                          api_key: str | None = Security(header)) -> None:
        presented = [k for k in (credentials.credentials if credentials else None, api_key) if k]
        if not check.accepts(presented):
            raise HTTPException(401, KEY_NEEDED if not presented else "The API key was not accepted.",
                                headers={"WWW-Authenticate": "Bearer"})

    return require_key


def _prepare(model: ServedModel, uploads: list[Upload], max_pixels: int, full: bool
             ) -> tuple[list[Decoded], list]:
    """Every upload decoded for the model (the first bad file refuses the request: raises)
    and the usable ones' input tensors (a worker thread's job: decoding is CPU work)."""
    decoded = [decode_for_model(upload, max_pixels, model.image_size, full=full) for upload in uploads]
    return decoded, [model.tensor(d.image) for d in decoded if d.image is not None]


def _not_found(request: Request) -> str:
    path = request.url.path
    if request.method == "POST":
        return f"No such endpoint: POST {path}. Use POST /api/predict."
    return f"No such page: {path}. Try /, /healthz, /readyz, /api/info, /metrics, /docs or POST /api/predict."


def _flag(value: str | None) -> bool:
    return (value or "0").lower() in ("1", "true", "yes", "on")


def _threshold(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise UploadError(400, f"threshold must be a number in [0, 1], got {raw!r}.")
    return value
