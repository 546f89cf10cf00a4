"""PromptPAR's learnable prompts (SPEC 2).

Visual: deep (VPT-style) prompts, one set per image block, that REPLACE their slots
before each block, plus part tokens that enter once and flow through like [CLS].
Text: deep per-attribute context tokens placed right after the start token, i.e.
before EOT, so the causal mask lets EOT read them. (The authors appended theirs after
the 77 text tokens, where EOT never sees them: they had zero gradient and no effect.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from clipadapt.backbone import ClipBackbone
from clipadapt.methods.promptpar.regions import TokenLayout

PLACEHOLDER = "X"


class VisualPrompts(nn.Module):
    """Deep visual prompts [depth, Q + G*P, D] and part tokens [G, D] for one layout.

    Init uniform(-v, v), v = sqrt(6 / (3 * p * p + D)) with p the patch size (SPEC 2:
    p = 14 and D = 1024 on ViT-L/14). Blocks past `depth` get no new prompts (depth 1 is
    shallow VPT: inserted once, then they flow through the blocks).
    """

    def __init__(self, backbone: ClipBackbone, layout: TokenLayout, depth: int | None = None):
        super().__init__()
        width, layers = backbone.width, min(depth or backbone.num_blocks, backbone.num_blocks)
        bound = math.sqrt(6.0 / (3 * backbone.patch_size ** 2 + width))
        count = len(layout.prompt_indices())
        self.layout = layout
        self.prompts = nn.Parameter(torch.empty(layers, count, width).uniform_(-bound, bound))
        self.parts = nn.Parameter(torch.empty(layout.groups, width).uniform_(-bound, bound)) if layout.groups else None
        self.register_buffer("prompt_slots", torch.tensor(layout.prompt_indices(), dtype=torch.long), persistent=False)
        self.register_buffer("part_slots", torch.tensor(layout.part_indices(), dtype=torch.long), persistent=False)

    def sequence(self, embedded: torch.Tensor, ln_pre: nn.Module, has_cls: bool = True) -> torch.Tensor:
        """[CLS, prompt slots (empty), part tokens, patches] from embed(ln_pre=False) output
        [B, 1 + N, D]. Part tokens (no position) go through ln_pre with CLS and the
        patches, as in the authors' model; the prompts enter after it. A tower without
        [CLS] (`has_cls=False`, SigLIP: `embedded` is [B, N, D]) leaves slot 0 empty: the
        backbone's `run_prompted` fills it with the pooled output."""
        b, _, d = embedded.shape
        seq = embedded.new_zeros(b, self.layout.length, d)
        if has_cls:
            seq[:, 0] = embedded[:, 0]
        seq[:, self.layout.prefix:] = embedded[:, 1 if has_cls else 0:]
        if self.parts is not None:
            seq[:, self.part_slots] = self.parts.to(seq.dtype)
        return ln_pre(seq)

    def inject(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Before block `layer`: put that layer's prompts into their slots (replacing the
        previous layer's outputs there); blocks past the prompted depth pass through."""
        if layer >= self.prompts.shape[0]:
            return x
        x = x.clone()
        x[:, self.prompt_slots] = self.prompts[layer].to(x.dtype)
        return x


class TextPrompts(nn.Module):
    """Per-attribute deep text context: [L_text, A, n, W], placed at positions 1..n."""

    def __init__(self, backbone: ClipBackbone, sentences: list[str], count: int, init_std: float = 0.02):
        super().__init__()
        tokens = backbone.tokenize([" ".join([PLACEHOLDER] * count) + " " + s for s in sentences])
        self.count = count
        self.context = nn.Parameter(torch.randn(backbone.text_blocks, len(sentences), count, backbone.text_width) * init_std)
        # Frozen pieces of the input: the token embeddings of everything but the slots.
        self.register_buffer("embeds", backbone.token_embeddings(tokens).detach(), persistent=False)
        self.register_buffer("eot", tokens.argmax(dim=-1), persistent=False)
        self.backbone_ref = [backbone]  # a list, so the backbone is not registered twice

    def features(self) -> torch.Tensor:
        """Text features [A, E] of the sentences with the current context."""
        n = self.count

        def inject(layer: int, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x[:, :1], self.context[layer].to(x.dtype), x[:, 1 + n:]], dim=1)

        return self.backbone_ref[0].encode_text_deep(self.embeds, self.eot, inject)
