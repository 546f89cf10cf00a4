"""Checking a store entry's rows against their checksums without growing the process.

Reading a memory-mapped array page by page makes every page resident in this process:
checking a 10 GB entry through its memmap would lift the peak resident memory by 10 GB
(benchmark row e). Here the .npy files are read with plain buffered reads, a bounded
chunk of whole items at a time, so the bytes pass through the page cache (which the
kernel may drop) and never through this process's mappings.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

CHUNK_BYTES = 32 * 2**20  # per read; whole items, at least one


def row_checksums(tokens: np.ndarray | None, embeds: np.ndarray) -> np.ndarray:
    """CRC-32 of each row's stored bytes: its tokens (when stored), then its embedding.
    `tokens` [R, ...] (or None) and `embeds` [R, E] hold R rows."""
    out = np.empty(len(embeds), dtype=np.uint32)
    for i in range(len(embeds)):
        start = zlib.crc32(np.ascontiguousarray(tokens[i])) if tokens is not None else 0
        out[i] = zlib.crc32(np.ascontiguousarray(embeds[i]), start)
    return out


class _ItemReader:
    """Whole items (first-axis rows) of a .npy array read from its file, not its mapping."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.item_shape = array.shape[1:]
        self.item_bytes = int(np.prod(self.item_shape, dtype=np.int64)) * array.dtype.itemsize
        self.path = getattr(array, "filename", None)
        self.offset = getattr(array, "offset", 0)
        self.handle = open(self.path, "rb") if self.path is not None else None  # noqa: SIM115 (closed below)

    def read(self, start: int, stop: int) -> np.ndarray:
        if self.handle is None:  # an in-memory array (tests, a store being built)
            return np.asarray(self.array[start:stop])
        self.handle.seek(self.offset + start * self.item_bytes)
        raw = self.handle.read((stop - start) * self.item_bytes)
        if len(raw) != (stop - start) * self.item_bytes:  # a file shortened while open
            raise OSError(f"{Path(self.path).name} ended early at item {start}")
        return np.frombuffer(raw, dtype=self.array.dtype).reshape(stop - start, *self.item_shape)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def corrupt_pairs(tokens: np.ndarray | None, embeds: np.ndarray, done: np.ndarray, crc: np.ndarray) -> np.ndarray:
    """(item, view) pairs [P, 2] marked `done` whose stored bytes do not match `crc`.

    tokens [N, V, T, D] (or None) and embeds [N, V, E] are the entry's memmaps (in-memory
    arrays work too); a file that ends early counts its missing rows as corrupt.
    """
    readers = [_ItemReader(a) for a in (tokens, embeds) if a is not None]
    per_item = sum(r.item_bytes for r in readers)
    step = max(1, CHUNK_BYTES // max(per_item, 1))
    bad: list[tuple[int, int]] = []
    try:
        for lo in range(0, done.shape[0], step):
            hi = min(done.shape[0], lo + step)
            chunk = lo + np.flatnonzero(done[lo:hi].any(axis=1))
            if not len(chunk):
                continue
            try:
                blocks = [r.read(lo, hi) for r in readers]
            except OSError:
                bad += [(int(i), int(v)) for i in chunk for v in np.flatnonzero(done[i])]
                continue
            tok_block, emb_block = (blocks if tokens is not None else (None, blocks[0]))
            for item in chunk:
                for view in np.flatnonzero(done[item]):
                    tok = tok_block[item - lo, view][None] if tok_block is not None else None
                    if row_checksums(tok, emb_block[item - lo, view][None])[0] != crc[item, view]:
                        bad.append((int(item), int(view)))
    finally:
        for r in readers:
            r.close()
    return np.asarray(bad, dtype=np.int64).reshape(-1, 2)
