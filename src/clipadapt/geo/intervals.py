"""Confidence intervals for a group's class shares.

Two estimators, two intervals:

* the expected share (mean of the calibrated probabilities) is a mean of values bounded
  in [0, 1], so the central limit theorem applies quickly and a normal interval from the
  sample variance is accurate once a group has a few dozen images. It is clipped to
  [0, 1]: near 0 or 1 the symmetric interval would otherwise leave the possible range.
* the top-class share is a binomial proportion (x of n images), and the plain normal
  (Wald) interval fails exactly where street-view groups live: small n and shares near
  0 or 1 (it collapses to zero width at x = 0). The Wilson score interval keeps its
  coverage there and never leaves [0, 1].
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from clipadapt.errors import ClipAdaptError


def z_value(confidence: float) -> float:
    """The two-sided standard-normal quantile for `confidence` (0.95 -> 1.959964)."""
    if not 0.0 < confidence < 1.0:
        raise ClipAdaptError(f"--confidence {confidence}: give a level between 0 and 1 (exclusive), e.g. 0.95.")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def normal_interval(mean: np.ndarray, m2: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of mean +- z * s / sqrt(n), s the sample standard deviation
    (m2 = the sum of squared deviations from the mean), clipped to [0, 1].

    A group of one image has no spread to estimate: its interval is the whole [0, 1].
    """
    mean, m2, n = (np.asarray(a, dtype=np.float64) for a in (mean, m2, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.maximum(m2, 0.0) / (n - 1.0)
        half = z * np.sqrt(variance / n)
    low = np.where(n >= 2, np.clip(mean - half, 0.0, 1.0), 0.0)
    high = np.where(n >= 2, np.clip(mean + half, 0.0, 1.0), 1.0)
    return low, high


def wilson_interval(hits: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the Wilson score interval for `hits` successes out of `n`.

    center = (x + z^2/2) / (n + z^2), half = z / (n + z^2) * sqrt(x (n - x) / n + z^2 / 4).
    n = 0 gives [0, 1].
    """
    x, n = np.asarray(hits, dtype=np.float64), np.asarray(n, dtype=np.float64)
    z2 = z * z
    with np.errstate(divide="ignore", invalid="ignore"):
        center = (x + z2 / 2.0) / (n + z2)
        half = z / (n + z2) * np.sqrt(np.maximum(x * (n - x) / n, 0.0) + z2 / 4.0)
    low = np.where(n > 0, np.clip(center - half, 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(center + half, 0.0, 1.0), 1.0)
    return low, high
