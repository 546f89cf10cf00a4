"""CLIP models whose image tower is a timm model inside open_clip (`TimmModel`):
SigLIP / SigLIP2 (a ViT with no [CLS] token and an attention-pool "MAP" head) and
EVA02-CLIP (timm EVA blocks with rotary position embeddings and a [CLS] token).

The same explicit forward as ClipBackbone, on timm's modules: patch embedding and
positions (`embed`), each block in turn (`block`, with EVA's rotary embedding), the
tokens of any block (`forward_features(tap_block=...)`, prefix tokens dropped) and the
pooled embedding (`pool`: final norm, timm's head, open_clip's head), so the methods
that need frozen features (zero-shot, linear probe, CLIP-Adapter, CLIP-MHAdapter) run
on them unchanged. What needs CLIP's own modules (deep prompts and part tokens inside
the blocks, the value path MaskCLIP reads, learned text context) is refused by
`families.check_method` with the reason, before any work.
"""

from __future__ import annotations

import torch
from torch import nn

from clipadapt.backbone.clip import ClipBackbone
from clipadapt.errors import ClipAdaptError


def timm_family(model: nn.Module) -> str | None:
    """"siglip" | "eva" for a model whose image tower is a timm ViT with a MAP head or a
    timm EVA; None for anything else."""
    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    if trunk is None or not hasattr(trunk, "blocks") or not hasattr(trunk, "patch_embed"):
        return None
    kind, attn_pool = type(trunk).__name__, getattr(trunk, "attn_pool", None)
    if kind == "Eva" and attn_pool is None:  # EVA01/02 ([CLS] pooling); not the attention-pooled PE towers
        return "eva"
    if kind == "VisionTransformer" and attn_pool is not None and not trunk.has_class_token:
        return "siglip"
    return None


class TimmTowerBackbone(ClipBackbone):
    """A frozen CLIP-family model with a timm image tower; see the module docstring."""

    @staticmethod
    def check_tower(model: nn.Module, name: str) -> None:
        if timm_family(model) is None:
            raise ClipAdaptError(f"Backbone '{name}' has an image tower clipadapt does not know "
                                 "(`clipadapt list backbones` shows the families).")

    tower_family = staticmethod(timm_family)

    @property
    def trunk(self) -> nn.Module:
        return self.model.visual.trunk

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.trunk.num_prefix_tokens)

    # ------------------------------------------------------------------ geometry
    @property
    def num_blocks(self) -> int:
        return len(self.trunk.blocks)

    @property
    def width(self) -> int:
        return int(self.trunk.embed_dim)

    @property
    def embed_dim(self) -> int:
        head = [m for m in self.model.visual.head.modules() if isinstance(m, nn.Linear)]
        if head:
            return head[-1].out_features
        return int(self.trunk.num_classes or self.width)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(int(g) for g in self.trunk.patch_embed.grid_size)

    @property
    def image_size(self) -> int:
        return int(self.trunk.patch_embed.img_size[0])

    @property
    def patch_size(self) -> int:
        return int(self.trunk.patch_embed.patch_size[0])

    # ------------------------------------------------------------------ image primitives
    def _rope(self) -> torch.Tensor | None:
        """EVA's rotary embedding of the patch grid (None for SigLIP). Computed each call, as
        timm does: a cached copy becomes a foreign constant in the ONNX export's graph."""
        rope = getattr(self.trunk, "rope", None)
        return rope.get_embed() if rope is not None else None

    def embed(self, images: torch.Tensor, ln_pre: bool = True) -> torch.Tensor:
        """Patchify, prefix tokens and positions, norm_pre: [B, prefix + N, D]."""
        t = self.trunk
        x = t.patch_embed(images.to(next(t.parameters()).dtype))
        x = t._pos_embed(x)
        if isinstance(x, tuple):  # EVA returns (tokens, rotary embedding); its forward has no patch drop
            x = x[0]
        elif getattr(t, "patch_drop", None) is not None:
            x = t.patch_drop(x)
        return t.norm_pre(x) if ln_pre else x

    def block(self, index: int, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        block = self.trunk.blocks[index]
        if self.family == "eva":
            return block(x, rope=self._rope(), attn_mask=attn_mask)
        return block(x, attn_mask=attn_mask)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The model's image embedding from final tokens: norm, timm's pooling head
        (attention pool or [CLS]), open_clip's head: [B, E]."""
        return self.model.visual.head(self.trunk.forward_head(self.trunk.norm(x)))

    def project_tokens(self, x: torch.Tensor, ln_post: bool = True) -> torch.Tensor:
        raise ClipAdaptError(f"{self.name} ({self.family}) has no per-token output projection; methods that need "
                             "one are refused on this family (`clipadapt list backbones`).")

    def value_path_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        raise ClipAdaptError(f"{self.name} ({self.family}): the value-path block is not defined on timm towers yet.")

    # ------------------------------------------------------------------ text
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            import open_clip

            try:
                self._tokenizer = open_clip.get_tokenizer(self.name)
            except Exception as exc:  # SigLIP's tokenizers come from the Hugging Face hub
                raise ClipAdaptError(f"The tokenizer of {self.name} could not be loaded ({type(exc).__name__}: "
                                     f"{exc}). Offline? It is fetched from the Hugging Face hub once; run once "
                                     "with a connection, or set HF_HOME to a cache that holds it.") from None
        return self._tokenizer
