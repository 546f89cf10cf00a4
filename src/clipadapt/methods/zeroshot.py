"""Zero-shot CLIP with the task's prompt templates (no training)."""

from __future__ import annotations

from clipadapt.methods.base import Method, TextClassifier, cosine_logits, register_method


@register_method("zeroshot")
class ZeroShot(Method):
    """logits = exp(logit_scale) * cos(g, t_k), g the CLIP image embedding."""
    summary = "CLIP zero-shot: cosine of the image embedding with each class prompt; nothing is trained"

    trains = False
    scores_any_classes = True

    def __init__(self, backbone, task, params):
        super().__init__(backbone, task, params)
        self.text = TextClassifier(backbone, task)

    def logits(self, features):
        scale = self.backbone.logit_scale
        return [cosine_logits(features.embedding, self.text.weights(a), scale) for a in range(len(self.task))]
