"""The one table of metrics: each score's name, the header it prints under, its direction,
which tasks have it, and where an evaluation holds it. The config's `train.monitor`, run
selection, the self-training summaries, the CLI and the report all read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clipadapt.errors import ClipAdaptError


@dataclass(frozen=True)
class Metric:
    """One score of an evaluation (`Runner.evaluate`'s dict).

    `tasks`: "any", or "multilabel" for the pedestrian-attribute scores. `headline`: a column
    of the per-attribute tables (computed per attribute from its confusion counts by
    `metrics.classification`, averaged over attributes in metrics["mean"]). `loss` is the
    mean cross-entropy of the probabilities, held at metrics["loss"]."""

    name: str
    header: str
    higher_is_better: bool = True
    tasks: Literal["any", "multilabel"] = "any"
    headline: bool = False
    monitor: bool = True  # a value of train.monitor (calibration scores describe, they do not select)

    def read(self, metrics: dict) -> float | None:
        """This score in an evaluation's metrics (None where it is undefined)."""
        return metrics.get("loss") if self.name == "loss" else metrics["mean"].get(self.name)


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", "accuracy", headline=True),
    Metric("macro_f1", "macro-F1", headline=True),
    Metric("weighted_f1", "weighted-F1", headline=True),
    Metric("balanced_accuracy", "bal. acc (adj.)", headline=True),
    Metric("mA", "mA", tasks="multilabel"),
    Metric("instance_f1", "instance F1", tasks="multilabel"),
    Metric("loss", "loss", higher_is_better=False),
    # metrics.calibration: 15-bin expected calibration error and negative log-likelihood
    Metric("ece", "ECE", higher_is_better=False, monitor=False),
    Metric("nll", "NLL", higher_is_better=False, monitor=False),
)}
HEADLINE = tuple(m.name for m in METRICS.values() if m.headline)
MONITORS = ("auto", *(m.name for m in METRICS.values() if m.monitor))  # the values train.monitor accepts
SUMMARY = ("accuracy", "macro_f1")  # the two scores of comparison tables (demo, adapt, bench)


def resolve_monitor(monitor: str, multilabel: bool) -> str:
    """The validation score that "auto" stands for: mA for multi-label tasks, macro-F1 otherwise."""
    if monitor == "auto":
        return "mA" if multilabel else "macro_f1"
    if monitor not in METRICS or not METRICS[monitor].monitor:
        raise ClipAdaptError(f"train.monitor={monitor} is not a score runs are selected on; choose one of "
                             f"{', '.join(MONITORS)}.")
    if METRICS[monitor].tasks == "multilabel" and not multilabel:
        single = ", ".join(m.name for m in METRICS.values() if m.tasks == "any")
        raise ClipAdaptError(f"train.monitor={monitor} is a multi-label score; this task is single-label. Use {single}.")
    return monitor


def selection_score(metrics: dict, monitor: str) -> float:
    """The monitored score of an evaluation, oriented so that higher is better (a loss is
    negated); an undefined score (e.g. one class present) is the worst."""
    metric = METRICS[monitor]
    value = metric.read(metrics)
    if value is None:
        return float("-inf")
    return value if metric.higher_is_better else -value
