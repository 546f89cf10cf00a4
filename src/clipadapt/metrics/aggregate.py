"""Mean ± standard deviation of metrics over runs with different seeds.

The paper reports one seed (SPEC 1); the project reports mean ± sample std over seeds,
so a difference between methods can be read against the seed-to-seed spread.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from clipadapt.metrics.classification import MetricsInputError


def aggregate_seeds(runs: list[dict]) -> dict:
    """Mean, sample std and count of every numeric leaf present in all runs.

    The nested structure of the metrics dicts is kept, and each numeric leaf becomes
    ``{"mean": float, "std": float, "n": int}``; e.g. ``runs[i]["attributes"]["weather"]
    ["macro_f1"]`` is summarised at ``result["attributes"]["weather"]["macro_f1"]``.
    The std uses ddof=1 (sample std, the spread one expects from another seed) and is
    0.0 for a single run. A leaf missing from a run, or not a number in every run (None,
    a list such as a confusion matrix, a string) is left out, so the summary never mixes
    runs that measured different things.

    Example:
        >>> s = aggregate_seeds([{"mean": {"accuracy": 0.8}}, {"mean": {"accuracy": 0.9}}])
        >>> round(s["mean"]["accuracy"]["mean"], 4), round(s["mean"]["accuracy"]["std"], 4)
        (0.85, 0.0707)
    """
    if not runs:
        raise MetricsInputError("No runs to aggregate; pass the metrics of at least one seed.")
    return _aggregate(runs)


def _aggregate(nodes: list[Mapping]) -> dict:
    summary = {}
    for key in _common_keys(nodes):
        values = [node[key] for node in nodes]
        if all(isinstance(v, Mapping) for v in values):
            child = _aggregate(values)
            if child:
                summary[key] = child
        elif all(_is_number(v) for v in values):
            summary[key] = mean_std(values)
    return summary


def _common_keys(nodes: list[Mapping]) -> list:
    """Keys of the first node that every node has, in the first node's order."""
    return [k for k in nodes[0] if all(k in node for node in nodes[1:])]


def _is_number(value) -> bool:
    # bool is an int subclass, but a flag averaged over seeds is not a metric.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mean_std(values: Iterable[float]) -> dict:
    """{"mean", "std" (ddof=1, 0.0 for one value), "n"} of a list of numbers."""
    xs = [float(v) for v in values]
    if not xs:
        raise MetricsInputError("mean_std needs at least one value.")
    mean = math.fsum(xs) / len(xs)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(xs)}


def format_mean_std(mean: float | None, std: float | None, digits: int = 2, percent: bool = True) -> str:
    """"85.12 ± 0.31" from mean 0.8512 and std 0.0031 (scaled by 100 when `percent`).

    A missing mean (an undefined metric) prints as "n/a".

    Example:
        >>> format_mean_std(0.8512, 0.0031)
        '85.12 ± 0.31'
        >>> format_mean_std(12.5, 1.34, digits=1, percent=False)
        '12.5 ± 1.3'
    """
    if mean is None:
        return "n/a"
    scale = 100.0 if percent else 1.0
    std = 0.0 if std is None else std
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"
