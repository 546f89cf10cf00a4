"""Where the batcher's forward passes run: threads of their own (never the event loop's),
and, for exact answers, padded to a fixed number of rows on one torch thread each.

Why both. On CPU, torch's result for an image changes in the last bits (~1e-6) with
(1) the number of rows in the batch, and (2) which of torch's intra-op threads computes
the image's rows: the fused CPU attention kernel gives each thread its own scratch buffer,
and with a single query row (the [CLS]-only last block of the fast backbone pass) the
rounding differs from thread to thread (measured on torch 2.14, 2 threads: rows 0-3 of 8
matched the image alone, rows 4-7 did not; with one thread every row matched). The other
rows' contents do not matter. So in exact mode every forward has exactly `rows` rows
(zeros below the real images) and runs on a thread where torch uses one intra-op thread;
a batch is cut into `threads` such forwards of ceil(batch_size / threads) rows that run
at once, so a full batch still uses every core torch would have used. An image's answer
then equals, bit for bit, the answer it gets alone (tests/test_serve_batching.py).
Without padding (`--no-pad-batches`) a batch is one forward of its real rows with torch's
own threading: less work for small batches, answers equal to float32 rounding only.
"""

from __future__ import annotations

import math
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch

Forward = Callable[[torch.Tensor], list[np.ndarray]]  # [B, 3, H, W] -> per attribute [B, K]
Rows = list[list[np.ndarray]]  # per image, per attribute [K]


class OneThreadPool:
    """Worker threads on which torch computes with one intra-op thread each.

    torch.set_num_threads sets the calling thread's OpenMP thread count and a process-wide
    default that threads started later inherit; the default is put back once the workers
    are set, so the rest of the process keeps its threads.
    """

    def __init__(self, size: int, name: str = "clipadapt-forward"):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        before = torch.get_num_threads()
        started = threading.Barrier(size + 1)
        self._threads = [threading.Thread(target=self._work, args=(started,), name=f"{name}-{i}", daemon=True)
                         for i in range(size)]
        for thread in self._threads:
            thread.start()
        started.wait()
        # restored from a thread of its own: calling it here would change this thread's count
        restore = threading.Thread(target=torch.set_num_threads, args=(before,))
        restore.start()
        restore.join()

    def _work(self, started: threading.Barrier) -> None:
        torch.set_num_threads(1)
        # torch reads the process-wide count into a thread on its first parallel op; this
        # call makes that happen now, while it is 1, not after it is put back
        torch.get_num_threads()
        started.wait()
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                future.set_exception(exc)

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def close(self) -> None:
        """Let the workers end once the jobs already given are done (they are daemons)."""
        for _ in self._threads:
            self._jobs.put(None)


class Forwards:
    """Runs forward passes of lists of image tensors, returning per image its rows.

    `pad`: exact mode (see the module's docstring); `threads`: the forwards one batch is
    cut into (default: torch's intra-op thread count now, 1 off the CPU); `workers`:
    batches that may be in flight at once (the batcher keeps to it).
    """

    def __init__(self, forward: Forward, blank: torch.Tensor, batch_size: int, pad: bool = True, workers: int = 1,
                 threads: int | None = None, cpu: bool = True):
        self.forward, self.blank, self.pad = forward, blank, pad
        self.threads = max(1, min(threads or (torch.get_num_threads() if cpu else 1), batch_size)) if pad else 1
        self.rows = math.ceil(batch_size / self.threads)  # rows of every exact forward
        self._workers = workers
        self._pool: OneThreadPool | ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker threads (once; `submit` starts them too)."""
        if self._pool is None:
            self._pool = (OneThreadPool(self._workers * self.threads) if self.pad
                          else ThreadPoolExecutor(self._workers, thread_name_prefix="clipadapt-forward"))

    def submit(self, images: Sequence[torch.Tensor]) -> Future:
        """Start the forward of `images` (at most batch_size); the future's result is, per
        image, its per-attribute probabilities."""
        self.start()
        if not self.pad:
            return self._pool.submit(self._run, list(images))
        parts = [self._pool.submit(self._run, list(images[i:i + self.rows]))
                 for i in range(0, len(images), self.rows)]
        return _joined(parts)

    def call(self, fn, *args) -> Future:
        """Run fn(*args) on a worker thread (other model work: attention overlays)."""
        self.start()
        return self._pool.submit(fn, *args)

    def _run(self, images: list[torch.Tensor]) -> Rows:
        padding = [self.blank] * (self.rows - len(images)) if self.pad else []
        probs = self.forward(torch.stack(images + padding))
        return [[p[i].copy() for p in probs] for i in range(len(images))]

    def close(self) -> None:
        if isinstance(self._pool, ThreadPoolExecutor):
            self._pool.shutdown(wait=False, cancel_futures=True)
        elif self._pool is not None:
            self._pool.close()
        self._pool = None


def _joined(parts: list[Future]) -> Future:
    """One future for the rows of `parts`, in order, once all are done (the first error wins)."""
    joined: Future = Future()
    left = [len(parts)]
    lock = threading.Lock()

    def one_done(_):
        with lock:
            left[0] -= 1
            if left[0]:
                return
        try:
            joined.set_result([row for part in parts for row in part.result()])
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting requests
            joined.set_exception(exc)

    for part in parts:
        part.add_done_callback(one_done)
    return joined
