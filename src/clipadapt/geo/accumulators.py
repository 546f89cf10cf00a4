"""Per-group running sums of one attribute's probabilities and top classes.

Memory is a few arrays of [groups x classes]: independent of how many rows stream
through. Each batch is summed with np.bincount over the groups present in it, then
merged into the running totals.

The spread of the probabilities is kept as M2 (the sum of squared deviations from the
mean), merged batch by batch with Chan et al.'s pairwise formula, rather than as a raw
sum of p^2: sum(p^2) - n * mean^2 cancels catastrophically when a confident model's
probabilities barely vary within a group (a variance of 1e-10 under a mean near 1),
which would leave the interval's width to rounding noise.
"""

from __future__ import annotations

import numpy as np

from clipadapt.geo.layout import AttributeColumns


class ShareAccumulator:
    """Running count, sum of p, M2 of p and top-class counts per group and class."""

    def __init__(self, attribute: AttributeColumns):
        self.attribute = attribute
        k = len(attribute.probability_columns)
        self.n = np.zeros(0, dtype=np.int64)
        self.total = np.zeros((0, k))
        self.m2 = np.zeros((0, k))
        self.top = np.zeros((0, k), dtype=np.int64)
        self.missing = 0  # rows used otherwise but without this attribute's probabilities

    def _grow(self, groups: int) -> None:
        size = len(self.n)
        if groups <= size:
            return
        new = max(groups, 2 * size, 64)  # doubling: growing costs O(groups) in all
        pad = new - size
        self.n = np.concatenate([self.n, np.zeros(pad, dtype=np.int64)])
        self.total, self.m2 = (np.vstack([a, np.zeros((pad, a.shape[1]))]) for a in (self.total, self.m2))
        self.top = np.vstack([self.top, np.zeros((pad, self.top.shape[1]), dtype=np.int64)])

    def add(self, local: np.ndarray, to_global: np.ndarray, probs: np.ndarray, top: np.ndarray) -> None:
        """Add a batch: `local` group id per row (0..L-1), `to_global` the global id of each
        local one, `probs` [rows, classes], `top` the index of each row's counted class
        (-1: none, e.g. a multi-label 'absent'). Rows with a NaN probability are left out
        of this attribute and counted in `missing`."""
        usable = np.isfinite(probs).all(axis=1)
        if not usable.all():
            self.missing += int((~usable).sum())
            local, probs, top = local[usable], probs[usable], top[usable]
        self._grow(int(to_global.max()) + 1 if len(to_global) else 0)
        groups, k = len(to_global), probs.shape[1]
        if not len(local):
            return
        n_b = np.bincount(local, minlength=groups)
        present = n_b > 0
        sum_b = np.stack([np.bincount(local, weights=probs[:, j], minlength=groups) for j in range(k)], axis=1)
        mean_b = sum_b / np.maximum(n_b, 1)[:, None]
        deviation = probs - mean_b[local]
        m2_b = np.stack([np.bincount(local, weights=deviation[:, j] ** 2, minlength=groups) for j in range(k)], axis=1)
        counted = top >= 0
        top_b = np.bincount(local[counted] * k + top[counted], minlength=groups * k).reshape(groups, k)

        gid = to_global[present]
        n_a, n_b = self.n[gid].astype(np.float64), n_b[present].astype(np.float64)
        mean_a = self.total[gid] / np.maximum(n_a, 1)[:, None]
        delta = mean_b[present] - mean_a
        self.m2[gid] += m2_b[present] + delta ** 2 * (n_a * n_b / (n_a + n_b))[:, None]
        self.total[gid] += sum_b[present]
        self.n[gid] += n_b.astype(np.int64)
        self.top[gid] += top_b[present]

    def result(self, groups: int) -> dict[str, np.ndarray]:
        """n [G], mean [G, K], m2 [G, K], top [G, K] for the first `groups` groups."""
        self._grow(groups)
        n = self.n[:groups]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = self.total[:groups] / n[:, None]
        return {"n": n, "mean": mean, "m2": self.m2[:groups], "top": self.top[:groups]}
