"""Reports and explanations of a run: a self-contained HTML page (`write_report`) and
CLIP-MHAdapter attention maps (`explain_images`, Figure 3 of the paper)."""

from clipadapt.report.attention import (
    explain_batch, explainable_methods, explain_images, heads_mean, heatmap, mean_attention, mhadapter_attention,
    model_view, overlay, received_attention,
)
from clipadapt.report.html import write_report

__all__ = [
    "explain_batch", "explain_images", "explainable_methods", "heads_mean", "heatmap", "mean_attention",
    "mhadapter_attention", "model_view", "overlay", "received_attention", "write_report",
]
