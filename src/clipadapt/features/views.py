"""Stored augmented views: how each one is made, and which one an epoch uses.

A train image may be stored as several augmented views. For the store to be
resumable and shareable, view v of image i must be the same pixels whenever and
wherever it is computed; `seeded_view_transform` makes it so. `ViewSampler` then
picks one stored view per image per epoch, deterministically.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def view_seed(base_seed: int, item: int, view: int) -> int:
    """The RNG seed of image `item`, view `view`: a well-mixed function of all three.

    SeedSequence spreads nearby inputs (item 7 vs 8) over unrelated seeds, which a sum
    or product of the numbers would not.
    """
    if min(base_seed, item, view) < 0:
        raise ValueError(f"seed, item and view must be >= 0, got {base_seed}, {item}, {view}")
    return int(np.random.SeedSequence([base_seed, item, view]).generate_state(1, dtype=np.uint64)[0])


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed the CPU torch, Python and NumPy global RNGs; restore all three on exit.

    torchvision transforms draw from torch's global RNG, timm's RandAugment from
    Python's `random`; restoring keeps the caller's own random stream untouched. Only
    the CPU torch generator is touched (`torch.manual_seed` would also reseed CUDA).
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class SeededViewTransform:
    """A transform called as `t(image, item)` that augments (item, view) reproducibly.

    The dataset must pass the row index of the image, since the augmentation depends
    on it. The view is bound at construction or given per call.
    """

    def __init__(self, transform: Callable[[Any], Any], base_seed: int, view: int | None = None):
        self.transform = transform
        self.base_seed = int(base_seed)
        self.view = view

    def __call__(self, image: Any, item: int, view: int | None = None) -> Any:
        view = self.view if view is None else view
        if view is None:
            raise TypeError("SeededViewTransform needs a view: bind one at construction or pass view=")
        with seeded_global_rngs(view_seed(self.base_seed, int(item), int(view))):
            return self.transform(image)

    def __repr__(self) -> str:
        return f"SeededViewTransform(base_seed={self.base_seed}, view={self.view}, transform={self.transform!r})"


def seeded_view_transform(transform: Callable[[Any], Any], base_seed: int,
                          view: int | None = None) -> SeededViewTransform:
    """Wrap a (random) torchvision transform so image i, view v always gets the same draw.

    The RNG seed comes from (base_seed, i, v); the global RNG state is restored after
    each call. Call the result as `t(image, item)` (view bound here) or
    `t(image, item, view=v)`.

    >>> import torch
    >>> t = seeded_view_transform(lambda x: x + torch.rand(1), base_seed=0, view=1)
    >>> bool(t(torch.zeros(1), item=3) == t(torch.zeros(1), item=3))
    True
    """
    return SeededViewTransform(transform, base_seed, view)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised SplitMix64 finaliser: a cheap, well-mixed uint64 -> uint64 hash."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


class ViewSampler:
    """Which stored view each item uses in a given epoch.

    Epochs are grouped in cycles of `n_views`; within a cycle every item visits each of
    its views exactly once (so no stored view is wasted), in an order that differs per
    item and per cycle. The answer for an item depends only on (seed, item, epoch), not
    on the batch it arrives in. With one view it is always 0.
    """

    def __init__(self, n_views: int, seed: int = 0):
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.n_views = int(n_views)
        self.seed = int(seed)

    def views(self, items: np.ndarray, epoch: int) -> np.ndarray:
        """View index (int64) per item for `epoch`; same shape as `items`."""
        items = np.asarray(items, dtype=np.int64)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if self.n_views == 1:
            return np.zeros(items.shape, dtype=np.int64)
        cycle, position = divmod(int(epoch), self.n_views)
        # One shuffled view order per cycle, shifted by a per-item offset: over the
        # cycle's epochs each item's view runs through every residue exactly once.
        order = np.random.default_rng([self.seed, cycle]).permutation(self.n_views)
        with np.errstate(over="ignore"):
            salt = _splitmix64(_splitmix64(np.array([self.seed % 2**64], dtype=np.uint64)) ^ np.uint64(cycle))
            offset = _splitmix64(items.astype(np.uint64) ^ salt)
        return ((offset % np.uint64(self.n_views)).astype(np.int64) + order[position]) % self.n_views
