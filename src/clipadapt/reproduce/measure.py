"""Our figures, read from the finished run folders: per (method, data set, metric), the
value of each seed in percent.

A cell's test scores are in its metrics.json; what it is scored on besides (the novel
classes, a transfer target) in eval-<name>/metrics.json, both under "mean" (the mean over
attributes: a single-label data set has one). Reading the files, not bench.json, gives
every metric a table may name (bench.json keeps accuracy and macro-F1 only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from clipadapt.errors import ClipAdaptError
from clipadapt.protocols.runner import CellResult
from clipadapt.run_files import RunFiles

Key = tuple[str, str, str]  # (method, data set, metric)


@dataclass
class Measured:
    """One cell of the comparison: a value per seed (percent), and whether the method
    trains (a method that does not, zeroshot, is one run whatever the seed)."""

    values: list[float] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    trains: bool = True
    mean: float | None = None  # where the figure is not the values' mean (base-to-novel's H)


def measure(kind: str, metrics: list[str], results: list[CellResult], out: Path) -> dict[Key, Measured]:
    """Every (method, data set, metric) the finished cells give, in the results' order."""
    found: dict[Key, Measured] = {}

    def add(method: str, dataset: str, metric: str, value: float | None, cell) -> None:
        if value is None:  # undefined for this run (e.g. one class present): nothing to average
            return
        entry = found.setdefault((method, dataset, metric), Measured())
        entry.values.append(100 * float(value))
        entry.seeds.append(cell.seed)
        entry.trains = cell.seed is not None

    for result in results:
        cell, folder = result.cell, Path(out) / result.cell.folder
        test = _mean(folder / RunFiles.METRICS)
        if kind == "base_to_novel":
            add(cell.method, cell.dataset, "base", test.get("accuracy"), cell)
            add(cell.method, cell.dataset, "novel", _mean(folder / "eval-novel" / RunFiles.METRICS).get("accuracy"),
                cell)
            continue
        for metric in metrics:
            add(cell.method, cell.dataset, metric, test.get(metric), cell)
        for target in cell.evaluations:  # transfer: each target data set, scored with its own class names
            scores = _mean(folder / f"eval-{target}" / RunFiles.METRICS)
            for metric in metrics:
                add(cell.method, target, metric, scores.get(metric), cell)
    return found


def _mean(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["mean"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ClipAdaptError(f"{path} cannot be read ({exc}); delete its run folder to run it again.") from None
