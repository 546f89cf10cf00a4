"""CLIP models whose image tower is a timm model inside open_clip (`TimmModel`):
SigLIP / SigLIP2 (a ViT with no [CLS] token and an attention-pool "MAP" head) and
EVA02-CLIP (timm EVA blocks with rotary position embeddings and a [CLS] token).

The same explicit forward as ClipBackbone, on timm's modules: patch embedding and
positions (`embed`), each block in turn (`block`, with EVA's rotary embedding), the
tokens of any block (`forward_features(tap_block=...)`, prefix tokens dropped) and the
pooled embedding (`pool` = `project(global_token(x))`: final norm, timm's pooling,
open_clip's head). What methods that reach inside the tower need has its counterpart
here: per-token outputs (`project_tokens`: SigLIP's through the MAP head's value path),
the value-path patch features microCLIP pools (`dense_patches`), and a prompted pass with
an attention mask (`run_prompted`; EVA's prompts get no rotary position). Why each is
the faithful counterpart of CLIP's: docs/backbones.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clipadapt.backbone.clip import ClipBackbone
from clipadapt.hub_access import EMBEDDED_ROUTE, from_hub
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

    def _rope_for(self, length: int) -> torch.Tensor | None:
        """EVA's rotary embedding for a sequence of `length` tokens: timm rotates every token
        after the prefix ([CLS]) by its patch position, so tokens a method puts between
        [CLS] and the patches (PromptPAR's prompts and part tokens, which have no position)
        get the identity rotation (sin 0, cos 1) instead."""
        rope = self._rope()
        if rope is None:
            return None
        extra = length - self.num_prefix_tokens - rope.shape[-2]
        if extra <= 0:
            return rope
        if rope.dim() != 2:
            raise ClipAdaptError(f"{self.name}: a batched rotary embedding cannot take tokens between [CLS] and the "
                                 "patches; prompts are not supported on this tower.")
        sin, cos = rope.chunk(2, dim=-1)
        still = torch.cat([sin.new_zeros(extra, sin.shape[-1]), cos.new_ones(extra, cos.shape[-1])], dim=-1)
        return torch.cat([still, rope], dim=0)

    def block(self, index: int, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        block = self.trunk.blocks[index]
        if self.family == "eva":
            return block(x, rope=self._rope_for(x.shape[1]), attn_mask=attn_mask)
        return block(x, attn_mask=attn_mask)

    # ------------------------------------------------------------------ output head, in two halves
    def pre_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk.norm_pre(x)

    def global_token(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled token before the output projection: final norm, timm's pooling (the
        MAP attention pool, or [CLS]) and fc_norm: [B, D]."""
        return self.trunk.forward_head(self.trunk.norm(x), pre_logits=True)

    def project(self, t: torch.Tensor) -> torch.Tensor:
        """The output projection of pooled-space tokens: timm's head, then open_clip's head
        (each a Linear, possibly with a bias, or nothing): [..., D] -> [..., E]."""
        return self.model.visual.head(self.trunk.head(t))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The model's image embedding from final tokens: norm, timm's pooling head
        (attention pool or [CLS]), open_clip's head: [B, E]."""
        return self.project(self.global_token(x))

    def pooled_space(self, x: torch.Tensor, norm: bool = True) -> torch.Tensor:
        """Every token [B, T, D] taken to the space the tower pools into, as the pooled
        token is: EVA: final norm and fc_norm per token (its pooling picks [CLS]); SigLIP:
        final norm, then the MAP head's value path (`map_value_path`), then fc_norm."""
        t = self.trunk
        x = t.norm(x) if norm else x
        if self.family == "siglip":
            x = map_value_path(t.attn_pool, x)
        elif getattr(t, "global_pool", "token") != "token":
            raise ClipAdaptError(f"{self.name} pools its tokens by {t.global_pool!r}, not [CLS]; per-token outputs "
                                 "are not defined for it.")
        return t.fc_norm(x)

    def project_tokens(self, x: torch.Tensor, ln_post: bool = True) -> torch.Tensor:
        """Every token through the tower's output head, as CLIP's ln_post(x) @ proj:
        `project(pooled_space(x))`, [B, T, E] (`ln_post=False` skips the final norm)."""
        return self.project(self.pooled_space(x, norm=ln_post))

    def value_path_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """EVA block `index` with attention replaced by its value path (MaskCLIP): each token
        sees only itself, so the rotary embedding (on queries and keys only) drops out."""
        if self.family != "eva":
            raise ClipAdaptError(f"{self.name} ({self.family}) pools after its blocks (MAP head): its value path is "
                                 "the pool's (`dense_patches`), not a block's.")
        return eva_value_path_block(self.trunk.blocks[index], x)

    def dense_patches(self, x: torch.Tensor, final: torch.Tensor | None = None, prefix: bool = True) -> torch.Tensor:
        """Value-path patch features in the pooled space, [B, N, D] (see ClipBackbone).
        EVA: the last block on its value path, then the per-token head norms. SigLIP: the
        blocks as they are (no [CLS] reads them), then the MAP head's value path per patch:
        what the pool outputs when that patch is its only key."""
        last = self.num_blocks - 1
        if self.family == "eva":
            skip = self.num_prefix_tokens if prefix else 0
            return self.pooled_space(self.value_path_block(last, x))[:, skip:]
        if not prefix and self.num_prefix_tokens:
            raise ClipAdaptError(f"{self.name}: the last block needs its prefix tokens; pass the full sequence.")
        final = self.block(last, x) if final is None else final
        return self.pooled_space(final)[:, self.num_prefix_tokens:]

    def run_prompted(self, x: torch.Tensor, inject=None, attn_mask: torch.Tensor | None = None,
                     ln_post: bool = True) -> torch.Tensor:
        """See ClipBackbone.run_prompted. A tower without [CLS] (SigLIP) has no token in
        slot 0: the blocks run on the rest, and slot 0's output is the MAP pool of every
        output token, the way SigLIP makes its image embedding."""
        if self.num_prefix_tokens:
            return super().run_prompted(x, inject, attn_mask, ln_post)
        shifted = None
        if inject is not None:
            def shifted(i: int, y: torch.Tensor) -> torch.Tensor:  # inject works on the full layout
                return inject(i, F.pad(y, (0, 0, 1, 0)))[:, 1:]
        y = self.run_blocks(x[:, 1:], shifted, attn_mask[1:, 1:] if attn_mask is not None else None)
        t = self.trunk
        pooled = t.fc_norm(t.attn_pool(t.norm(y) if ln_post else y))
        return torch.cat([self.project(pooled)[:, None], self.project_tokens(y, ln_post)], dim=1)

    # ------------------------------------------------------------------ text
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            import open_clip

            fix = f"Run once with a connection, or set HF_HOME to a cache that holds it. {EMBEDDED_ROUTE}"
            try:  # SigLIP's tokenizers come from the Hugging Face hub
                self._tokenizer = from_hub(f"The tokenizer of {self.name}",
                                           lambda: open_clip.get_tokenizer(self.name), fix)
            except ClipAdaptError:
                raise
            except Exception as exc:
                raise ClipAdaptError(f"The tokenizer of {self.name} could not be loaded ({type(exc).__name__}: "
                                     f"{exc}). {fix}") from None
        return self._tokenizer


def map_value_path(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's attention pool (`AttentionPoolLatent`, SigLIP's MAP head) applied to each token
    [B, T, D] as if it were the pool's only key: a softmax over one key is 1 in every head,
    so the latent query drops out and the output is proj(W_v x + b_v), then the pool's MLP
    residual (y + mlp(norm(y))). The MAP counterpart of MaskCLIP's value path."""
    if getattr(pool, "pos_embed", None) is not None:
        raise ClipAdaptError("this MAP head adds its own position embedding to the keys; its value path is not "
                             "defined here.")
    width = pool.kv.out_features // 2
    bias = pool.kv.bias[width:] if pool.kv.bias is not None else None
    y = pool.proj(F.linear(x, pool.kv.weight[width:], bias))
    return y + pool.mlp(pool.norm(y)) if pool.mlp is not None else y


def eva_value_path_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A timm EVA block (pre-norm `EvaBlock` with `EvaAttention`) with its attention forced
    to the identity: x + g1 * proj(norm(W_v norm1(x) + b_v) [* gate]); then the MLP half
    as usual. Rotary embeddings touch only queries and keys, so they have no part here."""
    attn = block.attn
    if type(block).__name__ != "EvaBlock" or type(attn).__name__ != "EvaAttention":
        raise ClipAdaptError(f"the value path is defined for timm's EvaBlock/EvaAttention, not "
                             f"{type(block).__name__}/{type(attn).__name__}.")
    h = block.norm1(x)
    if attn.qkv is not None:
        width = attn.qkv.out_features // 3
        v = F.linear(h, attn.qkv.weight[2 * width:], attn.v_bias)
    else:
        v = attn.v_proj(h)
    v = attn.norm(v)
    if attn.gate is not None:
        v = v * attn.gate(h).sigmoid()
    v = attn.proj(v)
    x = x + (block.gamma_1 * v if block.gamma_1 is not None else v)
    m = block.mlp(block.norm2(x))
    return x + (block.gamma_2 * m if block.gamma_2 is not None else m)
