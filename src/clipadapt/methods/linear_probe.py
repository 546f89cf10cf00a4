"""Linear probe: Linear(E -> K, bias) on the L2-normalised CLIP image embedding."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from clipadapt.methods.base import Method, register_method


@register_method("linear_probe")
class LinearProbe(Method):
    def __init__(self, backbone, task, params):
        super().__init__(backbone, task, params)
        self.heads = nn.ModuleList(nn.Linear(backbone.embed_dim, a.num_classes) for a in task.attributes)

    def forward(self, features):
        g = F.normalize(features.embedding, dim=-1)
        return [head(g) for head in self.heads]
