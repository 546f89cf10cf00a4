"""PromptPAR (SPEC 2): region-aware visual prompts, text prompts and a fusion block on a
frozen CLIP, for multi-label pedestrian attributes.

Image path: embed -> [CLS, prompts, part tokens, patches] -> every CLIP block with the
region mask, deep prompts replacing their slots before each block -> every token
through ln_post + proj. Main branch: FusionHead(text features, all tokens) -> [B, A].
Training also scores RegionAggregation(CLS, part tokens) with weight 0.5.
Every part has a switch for ablations (PromptPARParams).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Literal

import torch
from pydantic import Field, model_validator

from clipadapt.errors import ClipAdaptError
from clipadapt.methods.base import FeatureNeeds, Method, MethodParams, register_method
from clipadapt.methods.promptpar.heads import FusionHead, RegionAggregation
from clipadapt.methods.promptpar.prompts import TextPrompts, VisualPrompts
from clipadapt.methods.promptpar.regions import (AUTHORS_PART_STARTS, TokenLayout, part_regions,
                                                 region_attention_mask)


class PromptPARParams(MethodParams):
    """Authors' defaults; every branch can be switched off for ablations."""

    visual_prompts: bool = True
    prompt_depth: int | None = Field(None, ge=1)  # blocks that get their own prompts; null = all (deep)
    global_prompts: int = Field(10, ge=0)
    regions: bool = True  # part tokens, region groups, strip mask, aggregation branch
    groups: int = Field(4, ge=1)
    group_prompts: int = Field(10, ge=0)  # without regions they join the global prompts
    overlap: int = Field(2, ge=0)  # patch rows shared by neighbouring strips
    # strips: whole patch rows from any grid (clipadapt); authors: the regions the authors'
    # code cuts (offsets fixed for a 16-wide grid), which their checkpoints were trained with
    part_regions: Literal["strips", "authors"] = "strips"
    text_prompts: int = Field(3, ge=0)  # context tokens per attribute per text block; 0 = off
    token_norm: bool = True  # ln_post before proj on the output tokens (the authors' code skips it)
    aggregation_weight: float = Field(0.5, ge=0.0)  # 0 = no aggregation branch
    fusion_width: int = Field(768, ge=8)
    fusion_heads: int = Field(12, ge=1)
    fusion_weights: str | None = None  # local timm ViT state dict, or "timm:<model>" (online)
    fusion_trainable: bool = False  # train the whole fusion block, not only its LayerNorms (no fusion_weights)
    drop_path: float = Field(0.1, ge=0.0, lt=1.0)
    prompt_lr_scale: float = Field(0.5, gt=0.0)  # prompts: lr 4e-3 against the heads' 8e-3
    prompt_warmup_epochs: int | None = Field(10, ge=0)  # null: train.warmup_epochs

    @model_validator(mode="after")
    def _check(self):
        if self.fusion_width % self.fusion_heads:
            raise ValueError(f"fusion_heads ({self.fusion_heads}) must divide fusion_width ({self.fusion_width})")
        return self


@register_method("promptpar")
class PromptPAR(Method):
    summary = ("PromptPAR: region-aware visual and text prompts with a fusion block, "
               "for multi-label (pedestrian) attributes")
    Params = PromptPARParams
    explain_maps = "parts"  # each part token's attention over its region
    family_notes = {"siglip": "global token = the MAP pool of every output token; other tokens leave through the "
                              "MAP head's value path",
                    "eva": "prompts and part tokens get no rotary position (identity rotation); patches keep theirs"}

    def __init__(self, backbone, task, params: PromptPARParams):
        super().__init__(backbone, task, params)
        if not task.multilabel:
            raise ClipAdaptError("promptpar predicts multi-label (binary) attributes; use a PAR data format "
                                 "(pa100k, peta, rap, wider, par-pickle, synthetic-par) or data.task: multilabel.")
        if backbone.num_prefix_tokens > 1:  # e.g. register tokens: no slot for them in the layout
            raise ClipAdaptError(f"promptpar needs a tower with one [CLS] token or none; {backbone.name} has "
                                 f"{backbone.num_prefix_tokens} prefix tokens. Use a clip-family backbone.")
        groups = params.groups if params.regions else 0
        prompts_per_group = params.group_prompts if params.regions else 0
        global_prompts = params.global_prompts + (0 if params.regions else params.groups * params.group_prompts)
        if not params.visual_prompts:
            global_prompts, prompts_per_group = 0, 0
        self.layout = TokenLayout(global_prompts, groups, prompts_per_group, backbone.grid)
        self.visual = VisualPrompts(backbone, self.layout, depth=params.prompt_depth)
        if groups and params.part_regions == "authors" and groups > len(AUTHORS_PART_STARTS):
            raise ClipAdaptError(f"part_regions 'authors' exists for at most {len(AUTHORS_PART_STARTS)} groups (their "
                                 f"code fixes 4 offsets), not {groups}; use part_regions: strips.")
        mask = region_attention_mask(self.layout, params.overlap, params.part_regions) if groups else None
        self.register_buffer("attn_mask", mask, persistent=False)
        sentences = [a.sentence for a in task.attributes]
        self.text_prompts = TextPrompts(backbone, sentences, params.text_prompts) if params.text_prompts else None
        if self.text_prompts is None:
            self.register_buffer("fixed_text", backbone.encode_text(sentences, normalise=False), persistent=False)
        self.fusion = FusionHead(backbone.embed_dim, len(task), params.fusion_width, params.fusion_heads,
                                 params.drop_path, params.fusion_weights, train_block=params.fusion_trainable)
        use_aggregation = params.regions and params.aggregation_weight > 0
        self.aggregation = RegionAggregation(len(task)) if use_aggregation else None
        self._export_text: torch.Tensor | None = None  # set within frozen_for_export() only

    def regions(self) -> list[tuple[int, int]]:
        """Inclusive (first, last) patch index each part token sees ([] without parts)."""
        if not self.layout.groups:
            return []
        return part_regions(self.layout.grid, self.layout.groups, self.params.overlap, self.params.part_regions)

    # ------------------------------------------------------------------ contract
    def needs(self) -> FeatureNeeds:
        return FeatureNeeds(tap_block=None, frozen_image_path=False)  # prompts live inside the backbone

    def text_features(self) -> torch.Tensor:
        """Sentence features [A, E] (with the learned context when text prompts are on)."""
        if self._export_text is not None:
            return self._export_text
        return self.text_prompts.features() if self.text_prompts is not None else self.fixed_text

    @contextmanager
    def frozen_for_export(self):
        """Within: the sentence features (deep text prompts through the text tower), computed
        once now, as a constant (the exported graph holds no text tower)."""
        with torch.no_grad():
            sentences = self.text_features().detach().clone()
        self._export_text = sentences
        try:
            yield self
        finally:
            self._export_text = None

    def encode_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Every output token of the prompted, masked image pass through the tower's output head
        (CLIP: ln_post + proj): [B, T, E]; token 0 is the global one ([CLS], or SigLIP's pool)."""
        bb = self.backbone
        seq = self.visual.sequence(bb.embed(images, ln_pre=False), bb.pre_norm, has_cls=bb.num_prefix_tokens == 1)
        mask = self.attn_mask.to(seq.dtype) if self.attn_mask is not None else None
        return bb.run_prompted(seq, self.visual.inject, mask, ln_post=self.params.token_norm)

    def attribute_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Main logits [B, A] and, in training with the branch on, aggregation logits [B, A]."""
        tokens = self.encode_tokens(images)
        text = self.text_features()
        main = self.fusion(text, tokens)
        aux = None
        if self.training and self.aggregation is not None:
            aux = self.aggregation(tokens[:, 0], tokens[:, self.layout.part_indices()], text)
        return main, aux

    def image_logits(self, images: torch.Tensor) -> list[torch.Tensor]:
        main, _ = self.attribute_logits(images)
        return binary_logits(main)

    def training_image_logits(self, images: torch.Tensor):
        main, aux = self.attribute_logits(images)
        extra = [(self.params.aggregation_weight, binary_logits(aux))] if aux is not None else []
        return binary_logits(main), extra

    def logits(self, features):  # pragma: no cover - PromptPAR always runs from images
        raise RuntimeError("PromptPAR runs from images (its prompts are inside the backbone)")

    def param_group_options(self, name: str) -> dict:
        """Prompts train with their own learning-rate scale and warm-up (SPEC 2)."""
        if name.startswith(("visual.", "text_prompts.")):
            options = {"lr_scale": self.params.prompt_lr_scale}
            if self.params.prompt_warmup_epochs is not None:
                options["warmup_epochs"] = self.params.prompt_warmup_epochs
            return options
        return {}

    def prompts(self):
        ctx = " ".join(["[ctx]"] * self.params.text_prompts)
        return {a.name: [f"{ctx} {a.sentence}".strip()] for a in self.task.attributes}


def binary_logits(z: torch.Tensor) -> list[torch.Tensor]:
    """[B, A] sigmoid logits -> per attribute [B, 2] = [0, z], whose softmax is
    [1 - sigmoid(z), sigmoid(z)]: the engine's two-class form of a binary attribute."""
    pair = torch.stack([torch.zeros_like(z), z], dim=-1)
    return list(pair.unbind(dim=1))
