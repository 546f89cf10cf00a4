"""The limits and batching settings of `clipadapt serve` (one frozen object; free of torch
and of the web libraries, so anything may import it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ServeSettings:
    """Limits of the service and how it batches (defaults suit one CPU machine)."""

    max_upload_mb: float = 10.0  # whole request body, checked from Content-Length before reading (413)
    max_batch: int = 16  # images per request (413)
    max_pixels: int = 40_000_000  # per image, checked before decoding: decompression bombs (413)
    request_timeout: float = 30.0  # seconds a body may take to arrive (408) and a request may wait for a forward (503)
    workers: int = 1  # forward passes that may run at once (`--workers`)
    queue: int = 16  # requests that may wait while every forward is busy; more get 503 at once
    max_connections: int = 64  # connections and requests the server handles at once; more get 503
    batch_size: int = 8  # images per forward pass: requests arriving together share one
    batch_wait_ms: float = 5.0  # how long a forward waits for more images once it has one
    pad_batches: bool = True  # every forward gets exactly batch_size rows: answers equal the answer alone

    def __post_init__(self):
        for name in ("max_batch", "workers", "batch_size", "max_connections", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServeSettings.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("queue", "batch_wait_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"ServeSettings.{name} must be at least 0, got {getattr(self, name)}")
        if self.max_upload_mb <= 0 or self.request_timeout <= 0:
            raise ValueError("ServeSettings.max_upload_mb and request_timeout must be positive")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def limits(self) -> dict:
        """The limits and batching settings as /api/info shows them."""
        shown = asdict(self)
        return {"max_upload_mb": shown["max_upload_mb"], "max_batch": shown["max_batch"],
                "max_pixels": shown["max_pixels"], "request_timeout_s": shown["request_timeout"],
                "workers": shown["workers"], "queue": shown["queue"], "batch_size": shown["batch_size"],
                "batch_wait_ms": shown["batch_wait_ms"], "pad_batches": shown["pad_batches"]}
