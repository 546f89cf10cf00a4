"""CLIP-MHAdapter (You et al.): multi-head self-attention adapter on patch tokens.

Per attribute: tokens P [B, N, D] of block L-1 (before ln_post, CLS dropped) ->
Linear(D, 256) ReLU Linear(256, E) ReLU LayerNorm(E) -> MHSA(E, h heads) -> Dropout(0.1)
-> mean over tokens = a [B, E]; f = beta * a + (1 - beta) * g (g = CLIP embedding, not
normalised); logits = exp(logit_scale) * cos(f, t_k). 1,380,096 parameters per attribute
on ViT-B/16 whatever h is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from clipadapt.backbone.fast import linear
from clipadapt.methods.base import FeatureNeeds, Method, MethodParams, TextClassifier, cosine_logits, register_method


class MHAdapterParams(MethodParams):
    beta: float | dict[str, float] = 0.2  # blend weight of the adapter; per attribute allowed
    heads: int | dict[str, int] = 4
    bottleneck: int = Field(256, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    tap_block: int | None = None  # 1-based; default: L - 1 (input of the last block)

    @field_validator("beta")
    @classmethod
    def _beta_range(cls, v):
        for b in v.values() if isinstance(v, dict) else [v]:
            if not 0.0 <= b <= 1.0:
                raise ValueError(f"beta must be in [0, 1] (0 = zero-shot CLIP, 1 = adapter only), got {b}")
        return v

    def for_attribute(self, key: str, name: str, default):
        value = getattr(self, key)
        return value.get(name, default) if isinstance(value, dict) else value


class MHAdapterHead(nn.Module):
    """The adapter of one attribute: bottleneck MLP, LayerNorm, MHSA, dropout, mean."""

    def __init__(self, width: int, embed_dim: int, bottleneck: int, heads: int, dropout: float):
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"heads ({heads}) must divide the embedding size ({embed_dim})")
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, heads, dropout=0.0, bias=True, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, return_attention: bool = False):
        if not (return_attention or self.training or torch.is_grad_enabled()):
            return self.pooled_inference(tokens)
        h = self.norm(torch.relu(self.up(torch.relu(self.down(tokens)))))
        out, weights = self.attn(h, h, h, need_weights=return_attention, average_attn_weights=False)
        a = self.dropout(out).mean(dim=1)
        return (a, weights) if return_attention else a

    def pooled_inference(self, tokens: torch.Tensor) -> torch.Tensor:
        """forward's output in eval mode without autograd, for less work: ReLU fused into the
        matmuls, fused attention, and the output projection applied once to the token mean
        (it is affine, so the mean passes through it) instead of to every token."""
        attn = self.attn
        h = self.norm(linear(linear(tokens, self.down.weight, self.down.bias, "relu"), self.up.weight, self.up.bias,
                             "relu"))
        batch, count, width = h.shape
        q, k, v = linear(h, attn.in_proj_weight, attn.in_proj_bias).view(
            batch, count, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        mean = F.scaled_dot_product_attention(q, k, v).mean(dim=2)  # [B, heads, head_dim]: mean over tokens
        return attn.out_proj(mean.reshape(batch, width))


@register_method("mhadapter")
class MHAdapter(Method):
    summary = "CLIP-MHAdapter: a multi-head attention adapter on the patch tokens of a late block, a head per attribute"
    Params = MHAdapterParams
    scores_any_classes = True  # the adapters work on the image side only
    explain_maps = "attention"  # its heads' attention over the patches (`attention_maps`)

    @classmethod
    def check_backbone_fit(cls, params: dict, arch: dict, backbone: str) -> None:
        """Each attribute's head count must divide the backbone's embedding width."""
        from clipadapt.errors import ClipAdaptError

        embed = arch.get("embed_dim")
        if not embed:
            return
        heads = params.get("heads", 4)
        for attribute, h in (heads.items() if isinstance(heads, dict) else [(None, heads)]):
            if isinstance(h, int) and h >= 1 and embed % h:
                which = f"method.params.heads[{attribute}]" if attribute else "method.params.heads"
                fits = [d for d in range(1, min(embed, 64) + 1) if embed % d == 0]
                raise ClipAdaptError(f"{which}={h} does not divide the embedding width {embed} of backbone "
                                     f"'{backbone}'; use one of {fits}")

    def __init__(self, backbone, task, params: MHAdapterParams):
        super().__init__(backbone, task, params)
        self.tap_block = params.tap_block or max(backbone.num_blocks - 1, 1)
        self.adapters = nn.ModuleList(
            MHAdapterHead(backbone.width, backbone.embed_dim, params.bottleneck,
                          params.for_attribute("heads", a.name, 4), params.dropout)
            for a in task.attributes
        )
        self.betas = [float(params.for_attribute("beta", a.name, 0.2)) for a in task.attributes]
        self.text = TextClassifier(backbone, task)

    def needs(self) -> FeatureNeeds:
        return FeatureNeeds(tap_block=self.tap_block, frozen_image_path=True)

    def blended(self, features, attribute: int, return_attention: bool = False):
        """f = beta * adapter(tokens) + (1 - beta) * g for one attribute (and attention)."""
        out = self.adapters[attribute](features.tokens, return_attention=return_attention)
        a, attn = out if return_attention else (out, None)
        beta = self.betas[attribute]
        f = beta * a + (1.0 - beta) * features.embedding
        return (f, attn) if return_attention else f

    def logits(self, features):
        scale = self.backbone.logit_scale
        return [cosine_logits(self.blended(features, i), self.text.weights(i), scale) for i in range(len(self.task))]

    def attention_maps(self, features) -> list[torch.Tensor]:
        """Per attribute, the adapter's attention [B, heads, N, N] (for explanations)."""
        return [self.blended(features, i, return_attention=True)[1] for i in range(len(self.task))]
