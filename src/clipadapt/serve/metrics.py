"""Prometheus metrics of one app, on a registry of its own (two apps in one process, as in
the tests or a Ray Serve replica beside others, do not clash), and the ASGI middleware
that counts every HTTP answer."""

from __future__ import annotations

import collections
import threading
import time
from typing import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

RATE_WINDOW_S = 10.0  # the images-per-second gauge averages over this many seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)
OTHER_ROUTE = "other"  # the label of every path that is no route (404s), so labels stay few


class ServeMetrics:
    """The service's metrics; `render()` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, routes: Iterable[str] = ()):
        self.routes = set(routes)
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("clipadapt_http_requests", "HTTP requests answered, by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("clipadapt_http_request_duration_seconds", "Time to answer an HTTP request, by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_images = Histogram("clipadapt_batch_images", "Real images per forward pass (padding not counted).",
                                      buckets=BATCH_BUCKETS, registry=r)
        self.forward_seconds = Histogram("clipadapt_forward_duration_seconds", "Time of one batch's forward pass.",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Gauge("clipadapt_queue_requests", "Requests waiting for a forward pass.", registry=r)
        self.images = Counter("clipadapt_images_predicted", "Images predicted (its rate is images per second).",
                              registry=r)
        self.images_per_second = Gauge("clipadapt_images_per_second",
                                       f"Images predicted per second over the last {RATE_WINDOW_S:g} s.", registry=r)
        self.images_per_second.set_function(self._rate)
        self.ready = Gauge("clipadapt_ready", "1 once the model is loaded and warmed up, else 0.", registry=r)
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._lock = threading.Lock()

    def route_of(self, path: str) -> str:
        return path if path in self.routes else OTHER_ROUTE

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def batch(self, images: int, seconds: float) -> None:
        """One forward pass of `images` real images took `seconds`."""
        self.batch_images.observe(images)
        self.forward_seconds.observe(seconds)
        self.images.inc(images)
        now = time.monotonic()
        with self._lock:
            self._recent.append((now, images))
            self._forget(now)

    def _forget(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent.popleft()

    def _rate(self) -> float:
        with self._lock:
            self._forget(time.monotonic())
            return sum(n for _, n in self._recent) / RATE_WINDOW_S

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware: every HTTP answer counted by route, method and status, and timed."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def send_counted(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            self.metrics.answered(self.metrics.route_of(_route_path(scope)), scope["method"], status,
                                  time.perf_counter() - started)


def _route_path(scope) -> str:
    """The path the app routes on: without the prefix it is mounted under (root_path, e.g. a
    Ray Serve route prefix), which ASGI servers include in `path`."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root):] or "/"
    return path
