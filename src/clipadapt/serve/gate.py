"""Bounded concurrency for model inference: a few requests run, a few wait, the rest are
turned away at once (HTTP 503) instead of piling up threads and memory."""

from __future__ import annotations

import threading
from contextlib import contextmanager


class Busy(Exception):
    """The queue is full, or a waiting request ran out of time."""


class InferenceGate:
    """At most `running` requests inside the model at once and `waiting` more in line.

    One running request is the right default on CPU: torch already spreads one forward
    pass over every core, so two at a time only take turns more slowly. More (`--workers`)
    can pay where requests spend time outside torch (decoding, overlays) or on a GPU.
    """

    def __init__(self, running: int = 1, waiting: int = 16, wait_timeout: float = 30.0):
        if running < 1 or waiting < 0:
            raise ValueError(f"running must be >= 1 and waiting >= 0, got {running} and {waiting}")
        self.running, self.waiting, self.wait_timeout = running, waiting, wait_timeout
        self._slots = threading.BoundedSemaphore(running)
        self._lock = threading.Lock()
        self._inside = 0  # running + waiting now

    @contextmanager
    def slot(self):
        """Hold one inference slot for the `with` body; raise Busy when none can be had."""
        with self._lock:
            if self._inside >= self.running + self.waiting:
                raise Busy(f"{self._inside} requests are already running or waiting")
            self._inside += 1
        try:
            if not self._slots.acquire(timeout=self.wait_timeout):
                raise Busy(f"no inference slot came free within {self.wait_timeout:g} s")
            try:
                yield
            finally:
                self._slots.release()
        finally:
            with self._lock:
                self._inside -= 1
