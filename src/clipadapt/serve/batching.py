"""Dynamic batching: requests that arrive together share one forward pass.

A request hands its images (tensors) to `Batcher.predict` and awaits their probabilities.
A collector task takes images in arrival order: once a forward slot is free and one image
waits, it waits up to `batch_wait_ms` for more, up to `batch_size` images, and starts the
forward on a worker thread (forwards.py; the event loop never computes). A request with
more images than the batch size is split over several forwards.

Bounds: at most `workers` forwards at once; a request arriving while every forward is busy
and `queue` requests already wait is refused at once (`Busy`, HTTP 503), and a request
that waited `timeout` seconds without its images reaching a forward is refused too.

Everything asyncio is created on first use inside the running event loop, so an app may be
built in one place and served by another loop (uvicorn, Ray Serve, a test client).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from clipadapt.serve.forwards import Forwards

log = logging.getLogger("clipadapt.serve")


class Busy(Exception):
    """The queue is full, or a waiting request ran out of time (HTTP 503)."""


@dataclass(eq=False)
class _Request:
    images: list[torch.Tensor]
    future: asyncio.Future
    results: list = field(default_factory=list)
    taken: int = 0  # images handed to a forward so far
    left: int = 0  # images whose forward has not answered yet

    def __post_init__(self):
        self.results = [None] * len(self.images)
        self.left = len(self.images)


class Batcher:
    """Collects images from concurrent requests into forwards of up to `batch_size`.

    `on_batch(images, seconds)` is called after each forward (metrics); `on_queue(n)`
    whenever the number of waiting requests changes.
    """

    def __init__(self, forwards: Forwards, batch_size: int = 8, wait_ms: float = 5.0, workers: int = 1,
                 queue: int = 16, timeout: float = 30.0, on_batch: Callable[[int, float], None] | None = None,
                 on_queue: Callable[[int], None] | None = None):
        self.forwards = forwards
        self.batch_size, self.wait_s, self.workers = batch_size, wait_ms / 1000.0, workers
        self.queue_limit, self.timeout = queue, timeout
        self.on_batch = on_batch or (lambda n, s: None)
        self.on_queue = on_queue or (lambda n: None)
        self.ready = False  # True once the warm-up forward has run
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start the collector and the warm-up forward in the running event loop (again
        when called from another loop than before; a no-op otherwise)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and not loop.is_closed():
            return
        for task in self._tasks:  # a previous loop's tasks (that loop is gone or stopping)
            try:
                task.cancel()
            except RuntimeError:  # its loop is closed: nothing there runs any more
                pass
        self._loop = loop
        self._waiting: collections.deque[_Request] = collections.deque()
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers)
        self._running = 0  # forwards holding a slot (collecting or computing)
        self._tasks = [loop.create_task(self._warm_up(), name="clipadapt-warm-up"),
                       loop.create_task(self._collect(), name="clipadapt-batcher")]

    async def _warm_up(self) -> None:
        """One forward of a full batch of blank images (every worker thread's first call
        and torch's first-call allocations happen here, not in a request)."""
        slots = await self._acquire()
        try:
            await asyncio.wrap_future(self.forwards.submit([self.forwards.blank] * self.batch_size))
            self.ready = True
        except Exception:  # noqa: BLE001 - the service stays live and says it is not ready
            log.exception("the warm-up forward failed; /readyz stays 503")
        finally:
            self._release(slots)

    async def close(self) -> None:
        """Stop collecting and let the worker threads end."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self._loop = None
        self.ready = False
        self.forwards.close()

    # ------------------------------------------------------------------ requests
    async def predict(self, images: list[torch.Tensor]) -> list[list[np.ndarray]]:
        """Per image, its per-attribute probabilities, once forwards have run them.

        Raises:
            Busy: refused at once (queue full) or after waiting `timeout` seconds.
        """
        if not images:
            return []
        self.start()
        free = self.workers - self._running
        if len(self._waiting) >= self.queue_limit + free * self.batch_size:
            raise Busy(f"{len(self._waiting)} requests are already waiting")
        request = _Request(images, self._loop.create_future())
        self._waiting.append(request)
        self.on_queue(len(self._waiting))
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            if request.taken == len(request.images):  # every image is in a forward already: that ends
                return await request.future
            self._drop(request)
            raise Busy(f"no forward came free within {self.timeout:g} s") from None
        except asyncio.CancelledError:  # the client went away: its images need no forward
            self._drop(request)
            raise

    async def run_beside(self, fn, *args):
        """fn(*args) on a forward worker thread, holding a forward slot while it runs: other
        model work (attention overlays) counts against `workers` like a forward."""
        self.start()
        slots = await self._acquire()
        try:
            return await asyncio.wrap_future(self.forwards.call(fn, *args))
        finally:
            self._release(slots)

    def _drop(self, request: _Request) -> None:
        if request in self._waiting:
            self._waiting.remove(request)
            self.on_queue(len(self._waiting))
        if not request.future.done():
            request.future.cancel()

    # ------------------------------------------------------------------ the collector
    async def _collect(self) -> None:
        while True:
            while not self._waiting:  # idle: hold no slot, so overlays may have one
                self._arrived.clear()
                await self._arrived.wait()
            slots = await self._acquire()
            try:
                batch = await self._gather()
            except BaseException:
                self._release(slots)
                raise
            if batch:
                self._start_forward(batch, slots)
            else:  # the waiting requests left while the slot came free
                self._release(slots)

    async def _gather(self) -> list[tuple[_Request, int]]:
        """Up to batch_size (request, image index) pairs: those waiting now, then whatever
        else arrives within the wait."""
        batch: list[tuple[_Request, int]] = []
        self._take(batch)
        if not batch:
            return batch
        deadline = self._loop.time() + self.wait_s
        while len(batch) < self.batch_size:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            self._take(batch)
        return batch

    def _take(self, batch: list[tuple[_Request, int]]) -> None:
        while self._waiting and len(batch) < self.batch_size:
            request = self._waiting[0]
            room = self.batch_size - len(batch)
            end = min(len(request.images), request.taken + room)
            batch.extend((request, i) for i in range(request.taken, end))
            request.taken = end
            if end == len(request.images):
                self._waiting.popleft()
                self.on_queue(len(self._waiting))

    def _start_forward(self, batch: list[tuple[_Request, int]], slots: asyncio.Semaphore) -> None:
        started = time.perf_counter()
        done = asyncio.wrap_future(self.forwards.submit([request.images[i] for request, i in batch]))

        def finished(task: asyncio.Future) -> None:
            self._release(slots)
            if task.cancelled():
                error: BaseException | None = Busy("the service is stopping")
            else:
                error = task.exception()
            if error is None:
                self.on_batch(len(batch), time.perf_counter() - started)
            rows = None if error is not None else task.result()
            for k, (request, i) in enumerate(batch):
                if request.future.done():  # dropped (timeout, client gone) or failed already
                    continue
                if error is not None:
                    request.future.set_exception(error)
                    continue
                request.results[i] = rows[k]
                request.left -= 1
                if request.left == 0:
                    request.future.set_result(request.results)

        done.add_done_callback(finished)

    async def _acquire(self) -> asyncio.Semaphore:
        """Take a forward slot; the semaphore it came from is handed back to `_release`."""
        slots = self._slots
        await slots.acquire()
        self._running += 1
        return slots

    def _release(self, slots: asyncio.Semaphore) -> None:
        if slots is self._slots:  # not a slot of a loop the batcher has since left
            self._running -= 1
            slots.release()
