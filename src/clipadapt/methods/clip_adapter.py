"""CLIP-Adapter (Gao et al.): a bottleneck MLP on the image embedding, blended with it."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from clipadapt.methods.base import Method, MethodParams, TextClassifier, cosine_logits, register_method


class ClipAdapterParams(MethodParams):
    blend_ratio: float = Field(0.2, ge=0.0, le=1.0)  # weight of the adapter output
    reduction: int = Field(4, ge=1)


@register_method("clip_adapter")
class ClipAdapter(Method):
    """f = r * MLP(g) + (1 - r) * g; MLP = Linear(E, E/4, no bias) ReLU Linear(E/4, E, no bias) ReLU.
    131,072 trainable parameters for E = 512."""
    summary = "CLIP-Adapter: a bottleneck MLP on the image embedding, blended with it, scored against the class prompts"

    Params = ClipAdapterParams
    scores_any_classes = True

    def __init__(self, backbone, task, params: ClipAdapterParams):
        super().__init__(backbone, task, params)
        e = backbone.embed_dim
        hidden = e // params.reduction
        self.adapter = nn.Sequential(
            nn.Linear(e, hidden, bias=False), nn.ReLU(inplace=True), nn.Linear(hidden, e, bias=False), nn.ReLU(inplace=True)
        )
        self.text = TextClassifier(backbone, task)

    def logits(self, features):
        g = features.embedding
        r = self.params.blend_ratio
        f = r * self.adapter(g) + (1 - r) * g
        scale = self.backbone.logit_scale
        return [cosine_logits(f, self.text.weights(a), scale) for a in range(len(self.task))]
