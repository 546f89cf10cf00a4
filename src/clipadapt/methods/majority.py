"""Majority class ("ZeroR"): always the most frequent training class of each attribute.

The CLIP-MHAdapter authors' version always predicted class 0; this one counts.
"""

from __future__ import annotations

import torch

from clipadapt.methods.base import Method, register_method
from clipadapt.task import MISSING


@register_method("majority")
class MajorityClass(Method):
    summary = "each attribute's most frequent training class: the floor a method must beat"
    trains = False
    reads_images = False  # the prior alone: only the batch size of the images matters

    def __init__(self, backbone, task, params):
        super().__init__(backbone, task, params)
        for i, attr in enumerate(task.attributes):
            self.register_buffer(f"counts_{i}", torch.zeros(attr.num_classes))

    def fit_statistics(self, labels: torch.Tensor) -> None:
        for i, attr in enumerate(self.task.attributes):
            col = labels[:, i]
            col = col[col != MISSING]
            getattr(self, f"counts_{i}").copy_(torch.bincount(col, minlength=attr.num_classes).float())

    def logits(self, features):
        batch = features.embedding.shape[0]
        out = []
        for i in range(len(self.task)):
            counts = getattr(self, f"counts_{i}")
            # log prior; a tiny tie-break keeps argmax on the first most frequent class
            prior = (counts + 1e-6) / (counts.sum() + 1e-6 * counts.numel())
            out.append(prior.log().expand(batch, -1).to(features.embedding.dtype))
        return out
