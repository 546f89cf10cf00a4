"""Metrics of a run: multiclass scores per attribute, multi-label (pedestrian attribute)
scores, confusion matrices (CSV / PNG), training curves and mean ± std over seeds.

The plotting functions are imported on first use, so that the trainer, which needs
only the scores, does not pay for importing matplotlib.
"""

from __future__ import annotations

from clipadapt.metrics.aggregate import aggregate_seeds, format_mean_std, mean_std
from clipadapt.metrics.classification import (
    MEAN_KEYS,
    MetricsInputError,
    attribute_metrics,
    headline,
    multiclass_metrics,
    row_normalised,
    write_confusion_csv,
)

from clipadapt.metrics.multilabel import par_metrics, positive_rates

_PLOTS = ("plot_confusion", "plot_curves", "plot_style")

__all__ = [
    "MEAN_KEYS", "MetricsInputError", "aggregate_seeds", "attribute_metrics", "format_mean_std", "headline",
    "mean_std", "multiclass_metrics", "par_metrics", "positive_rates", "row_normalised", "write_confusion_csv", *_PLOTS,
]


def __getattr__(name: str):
    if name in _PLOTS:
        from clipadapt.metrics import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'clipadapt.metrics' has no attribute '{name}'")
