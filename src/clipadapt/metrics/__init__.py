"""Metrics of a run: multiclass scores per attribute, multi-label (pedestrian attribute)
scores, confusion matrices (CSV / PNG), training curves and mean ± std over seeds, and the
table of metric names and directions (`clipadapt.metrics.table`).

Every name is imported on first use, so that the config (which reads the metric table)
and the trainer (which needs only the scores) do not pay for scikit-learn or matplotlib.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "aggregate_seeds": "aggregate", "format_mean_std": "aggregate", "mean_std": "aggregate",
    "MEAN_KEYS": "classification", "MetricsInputError": "classification", "attribute_metrics": "classification",
    "headline": "classification", "multiclass_metrics": "classification", "row_normalised": "classification",
    "write_confusion_csv": "classification",
    "par_metrics": "multilabel", "positive_rates": "multilabel",
    "plot_confusion": "plots", "plot_curves": "plots", "plot_style": "plots",
    "METRICS": "table", "resolve_monitor": "table", "selection_score": "table",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"clipadapt.metrics.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'clipadapt.metrics' has no attribute '{name}'")
