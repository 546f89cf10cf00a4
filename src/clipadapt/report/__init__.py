"""Reports and explanations of a run: a self-contained HTML page (`write_report`) and
attention pictures (`explain_images`): CLIP-MHAdapter's Figure 3, PromptPAR's part
tokens over their strips, microCLIP's SOAP attention and foreground mask."""

from clipadapt.report.attention import (
    explain_batch, explainable_methods, heads_mean, heatmap, mean_attention, mhadapter_attention, model_view, overlay,
    received_attention,
)
from clipadapt.report.explain import explain_images, explained_methods
from clipadapt.report.html import write_report, write_report_or_warn

__all__ = [
    "explain_batch", "explain_images", "explainable_methods", "explained_methods", "heads_mean", "heatmap",
    "mean_attention", "mhadapter_attention", "model_view", "overlay", "received_attention", "write_report",
    "write_report_or_warn",
]
