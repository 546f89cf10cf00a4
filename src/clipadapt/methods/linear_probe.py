"""Linear probe: Linear(E -> K, bias) on the L2-normalised CLIP image embedding."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from clipadapt.methods.base import Method, register_method


@register_method("linear_probe")
class LinearProbe(Method):
    summary = "a linear classifier on the frozen image embedding"
    # Unit-norm inputs give logits of a few hundredths at init: lr 5e-4 (the adapters' default)
    # barely moves them in a hundred steps; 1e-2 is the shipped GSS probe recipe's lr.
    train_defaults = {"lr": 1e-2}

    def __init__(self, backbone, task, params):
        super().__init__(backbone, task, params)
        self.heads = nn.ModuleList(nn.Linear(backbone.embed_dim, a.num_classes) for a in task.attributes)

    def logits(self, features):
        g = F.normalize(features.embedding, dim=-1)
        return [head(g) for head in self.heads]
