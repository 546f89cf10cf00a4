"""PromptPAR's two output branches (SPEC 2): the fusion block with per-attribute heads,
and the region-aggregation branch used as an auxiliary loss during training."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from clipadapt.hub_access import from_hub
from clipadapt.errors import ClipAdaptError


class FusionHead(nn.Module):
    """[A text tokens ; visual tokens] -> one ViT block (frozen but its LayerNorms) ->
    LayerNorm -> one Linear(width -> 1) per attribute on the text-token outputs -> BN.

    The block is the last block of timm's ImageNet ViT-B/16 in the paper (width 768, 12
    heads, drop-path 0.1); `weights` loads it from a local timm ViT state dict
    (keys blocks.<last>.* and norm.*) or, online, "timm:<model name>". `train_block`
    trains the whole block (for a block without pretrained weights).
    """

    def __init__(self, embed_dim: int, attributes: int, width: int = 768, heads: int = 12,
                 drop_path: float = 0.1, weights: str | None = None, train_block: bool = False):
        super().__init__()
        self.word_embed = nn.Linear(embed_dim, width)
        self.visual_embed = nn.Linear(embed_dim, width)
        with torch.random.fork_rng(devices=[]):  # built on the CPU; leave any GPU untouched
            torch.manual_seed(0)  # a random fusion block (no weights given) is the same every run
            # eps 1e-6: the LayerNorms of timm's (and the authors') ImageNet ViT-B/16
            self.block = Block(width, heads, mlp_ratio=4.0, qkv_bias=True, drop_path=drop_path,
                               norm_layer=partial(nn.LayerNorm, eps=1e-6))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        if weights:
            self.load_block(weights)
        for name, p in self.block.named_parameters():
            # Frozen but its LayerNorms (SPEC 2), unless asked: a block with no pretrained
            # weights has random attention that only training can make look at the right tokens.
            p.requires_grad = train_block or name.startswith(("norm1.", "norm2."))
        self.weight = nn.Parameter(torch.empty(attributes, width))
        self.bias = nn.Parameter(torch.zeros(attributes))
        nn.init.normal_(self.weight, std=0.02)
        self.bn = nn.BatchNorm1d(attributes)
        self.attributes = attributes

    def load_block(self, weights: str) -> None:
        """Copy the last block and the final norm of an ImageNet ViT into this head."""
        if weights.startswith("timm:"):
            import timm

            fix = "Save the timm model's state dict once and pass the file as fusion_weights."
            try:
                state = from_hub(f"The fusion block '{weights}'",
                                 lambda: timm.create_model(weights[5:], pretrained=True), fix).state_dict()
            except ClipAdaptError:
                raise
            except Exception as exc:
                raise ClipAdaptError(f"Could not load the fusion block '{weights}' ({exc}). {fix}") from None
        else:
            from clipadapt.backbone.weights import read_state_dict

            state = read_state_dict(Path(weights).expanduser())
        last = max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=None)
        if last is None:
            raise ClipAdaptError(f"{weights} holds no ViT blocks (keys blocks.<i>.*); it is not a timm ViT state dict.")
        block = {k[len(f"blocks.{last}."):]: v for k, v in state.items() if k.startswith(f"blocks.{last}.")}
        norm = {k[len("norm."):]: v for k, v in state.items() if k.startswith("norm.")}
        try:
            self.block.load_state_dict(block, strict=True)
            self.norm.load_state_dict(norm, strict=True)
        except RuntimeError as exc:
            raise ClipAdaptError(f"{weights}: its last ViT block does not fit the fusion block ({exc}).") from None

    def forward(self, text: torch.Tensor, visual_tokens: torch.Tensor) -> torch.Tensor:
        """text [A, E], visual_tokens [B, T, E] -> logits [B, A]."""
        b = visual_tokens.shape[0]
        words = self.word_embed(text).unsqueeze(0).expand(b, -1, -1)
        z = torch.cat([words, self.visual_embed(visual_tokens)], dim=1)
        z = self.norm(self.block(z))[:, : self.attributes]
        return self.bn((z * self.weight).sum(-1) + self.bias)


class RegionAggregation(nn.Module):
    """Training-only branch: score the global token and each part token against the A
    text features (100 x cosine, softmax over attributes with a learnable temperature);
    per attribute keep the max over regions if it exceeds 0.5, else the min; average
    with the global row; BatchNorm. Computed per sample (the authors' loop kept the last
    sample's result for the whole batch)."""

    def __init__(self, attributes: int):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.bn = nn.BatchNorm1d(attributes)

    def forward(self, global_token: torch.Tensor, parts: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """global_token [B, E], parts [B, G, E], text [A, E] -> logits [B, A]."""
        tokens = torch.cat([global_token.unsqueeze(1), parts], dim=1)
        cos = F.normalize(tokens, dim=-1) @ F.normalize(text, dim=-1).t()  # [B, 1 + G, A]
        scores = torch.softmax(100.0 * cos * self.log_temperature.exp(), dim=-1)
        regions = scores[:, 1:]
        best, worst = regions.max(dim=1).values, regions.min(dim=1).values
        aggregated = torch.where(best > 0.5, best, worst)
        return self.bn(0.5 * (aggregated + scores[:, 0]))
