"""CoOp (Zhou et al.): learned context vectors in front of each class name.

Prompt = [SOS] ctx_1 ... ctx_M <class words> . [EOS]; the context is shared by all
classes of an attribute (one context per attribute), randomly initialised (std 0.02).
The context goes right after the tokenizer's own prefix (CLIP's start token; none for
SigLIP's tokenizer) and the feature is read where the text tower pools (CLIP: EOS;
SigLIP: the last position, which sees every token: its text tower has no causal mask).
The frozen text encoder runs on every step because its input is being learned.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from pydantic import Field
from torch import nn

from clipadapt.methods.base import Method, MethodParams, cosine_logits, register_method

PLACEHOLDER = "X"


class CoOpParams(MethodParams):
    n_ctx: int = Field(8, ge=1)
    init_std: float = Field(0.02, gt=0)


@register_method("coop")
class CoOp(Method):
    summary = "CoOp: learned context words in the class prompts; the image side stays frozen"
    Params = CoOpParams
    scores_any_classes = True  # the context is shared by all classes

    def __init__(self, backbone, task, params: CoOpParams):
        super().__init__(backbone, task, params)
        width = backbone.text_width
        self.contexts = nn.ParameterList(
            nn.Parameter(torch.randn(params.n_ctx, width) * params.init_std) for _ in task.attributes
        )
        for i, attr in enumerate(task.attributes):
            texts = [" ".join([PLACEHOLDER] * params.n_ctx) + " " + attr.words(c) + "." for c in attr.classes]
            tokens = backbone.tokenize(texts)
            # Frozen pieces of the prompt: embeddings of everything but the context slots.
            self.register_buffer(f"embeds_{i}", backbone.token_embeddings(tokens).detach(), persistent=False)
            self.register_buffer(f"eot_{i}", backbone.pooled_text_index(tokens), persistent=False)
        self.prefix = backbone.text_prefix_tokens
        self._export_rows: list[torch.Tensor] | None = None  # set within frozen_for_export() only

    def class_text_features(self, attribute: int) -> torch.Tensor:
        """Text features [K, E] of one attribute's prompts with the current context."""
        if self._export_rows is not None:
            return self._export_rows[attribute]
        embeds = getattr(self, f"embeds_{attribute}")
        ctx = self.contexts[attribute].to(embeds.dtype).expand(embeds.shape[0], -1, -1)
        n, p = ctx.shape[1], self.prefix
        x = torch.cat([embeds[:, :p], ctx, embeds[:, p + n:]], dim=1)
        return self.backbone.encode_text_embeddings(x, getattr(self, f"eot_{attribute}"))

    @contextmanager
    def frozen_for_export(self):
        """Within: the prompts' text features, computed once now, as constants (the exported
        graph holds no text tower)."""
        with torch.no_grad():
            rows = [self.class_text_features(a).detach().clone() for a in range(len(self.task))]
        self._export_rows = rows
        try:
            yield self
        finally:
            self._export_rows = None

    def text_classifier_rows(self):
        return [self.class_text_features(a) for a in range(len(self.task))]

    def prompts(self):
        ctx = " ".join(["[ctx]"] * self.params.n_ctx)
        return {a.name: [f"{ctx} {a.words(c)}." for c in a.classes] for a in self.task.attributes}

    def logits(self, features):
        scale = self.backbone.logit_scale
        return [cosine_logits(features.embedding, self.class_text_features(a), scale) for a in range(len(self.task))]
