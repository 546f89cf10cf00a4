"""Serving batches from a store entry without the entry counting as resident memory.

Rows are read through a memory map; every page read stays mapped into the process
(and counted in its resident size) until the kernel needs the memory back, so a
process that reads a 15 GB entry would look like it holds 15 GB. Releasing the mapped
pages after each batch keeps the resident size of store-backed training flat as the
data set grows; the data stays in the page cache, so a later read costs a minor page
fault, not a disk read.
"""

from __future__ import annotations

import mmap
from typing import Iterator

import numpy as np

from clipadapt.backbone import ImageFeatures
from clipadapt.features.store import FeatureSet
from clipadapt.features.views import ViewSampler


def release_resident_pages(entry: FeatureSet) -> None:
    """Unmap the pages of `entry`'s memory-mapped arrays from this process (data unchanged)."""
    for array in (entry.tokens, entry.embeds):
        mapped = getattr(array, "_mmap", None)  # numpy.memmap's mapping; None for in-memory arrays
        if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapped.madvise(mmap.MADV_DONTNEED)


def entry_batches(entry: FeatureSet, sampler: ViewSampler, order: np.ndarray, batch_size: int,
                  epoch: int = 0) -> Iterator[tuple[ImageFeatures, np.ndarray]]:
    """(features of rows `order[k:k + batch_size]`, those rows), one view per row for `epoch`."""
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        tokens, embeds = entry.read(idx, sampler.views(idx, epoch))  # copies: the pages can go
        release_resident_pages(entry)
        yield ImageFeatures(tokens, embeds), idx
