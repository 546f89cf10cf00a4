"""ClipBackbone: a frozen open_clip model with an explicit, tappable ViT forward.

The image tower is run block by block here (no forward hooks), so a method can take
the tokens of any block, insert its own tokens (deep prompts) with an attention mask,
or run a block's value path only (MaskCLIP), using the primitives `embed`, `block`,
`value_path_block` and `pool`.
"""

from __future__ import annotations

from dataclasses import dataclass

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from clipadapt.backbone.fast import Int8Tower, encode_bf16, supports_fast_path
from clipadapt.backbone.fast import encode as fast_encode
from clipadapt.errors import ClipAdaptError

# How images may be prepared (data/transforms.py builds them; BackboneConfig documents them).
PREPROCESSING = ("crop", "letterbox", "resize")
INTERPOLATIONS = ("bicubic", "bilinear")

LOSSY_PRECISIONS = ("bf16", "int8")
CPU_ONLY_PRECISIONS = ("int8",)  # dynamic quantisation has CPU kernels only


@dataclass
class ImageFeatures:
    """What a frozen image pass gives a method.

    tokens: [B, N, D] patch tokens (CLS dropped) of the tapped block, before ln_post;
        None when the method asked for no tap.
    embedding: [B, E] CLIP's image embedding, ln_post(CLS) @ proj, NOT normalised; None
        only when `forward_features(..., embedding=False)` was asked for tokens alone.
    """

    tokens: torch.Tensor | None
    embedding: torch.Tensor | None

    def to(self, device, dtype=torch.float32) -> "ImageFeatures":
        move = lambda t: t.to(device, dtype, non_blocking=True) if t is not None else None  # noqa: E731
        return ImageFeatures(move(self.tokens), move(self.embedding))


class ClipBackbone(nn.Module):
    """A CLIP model (open_clip) with every weight frozen and an explicit ViT forward.

    Attributes:
        name, pretrained, weights_id: where the weights came from (weights_id is the
            identity used in feature-store keys and checkpoint cards).
    """

    def __init__(self, model: nn.Module, name: str, pretrained: str | None, weights_id: str,
                 tag: str | None = None, preprocessing_known: bool = True):
        super().__init__()
        self.check_tower(model, name)
        self.family = self.tower_family(model)  # see backbone/families.py
        self.model = model.eval()
        self.name = name
        self.pretrained = pretrained
        self.weights_id = weights_id
        self.tag = tag  # the open_clip tag a local weights file is a copy of (its preprocessing applies)
        # False: a local file of unknown origin; its normalisation is the architecture's default, a guess
        self.preprocessing_known = preprocessing_known
        self.requires_grad_(False)
        self._tokenizer = None
        self.preprocess = "crop"  # or "letterbox" | "resize": see BackboneConfig
        self.normalise = "model"  # or "half": mean = std = 0.5
        self.interpolation = "bicubic"  # or "bilinear" (the PromptPAR authors' transforms)
        # forward_features takes the fused path (backbone/fast.py) when the blocks allow it;
        # set False to run open_clip's own block modules instead (same numbers, slower).
        self.fast = self.family == "clip" and supports_fast_path(model.visual)
        self.precision = "fp32"  # or a lossy opt-in for inference: see set_precision
        self._lossy_tower = None

    num_prefix_tokens = 1  # [CLS] before the patches

    @staticmethod
    def tower_family(model: nn.Module) -> str:
        """open_clip's own ViT with [CLS] pooling (OpenAI, LAION, DataComp, DFN, MetaCLIP)."""
        return "clip"

    @staticmethod
    def check_tower(model: nn.Module, name: str) -> None:
        """Refuse a model whose image tower this class cannot run (one clear line)."""
        visual = getattr(model, "visual", None)
        if visual is None or not hasattr(visual, "transformer") or getattr(visual, "attn_pool", None) is not None:
            raise ClipAdaptError(
                f"Backbone '{name}' is not a CLIP ViT with [CLS] pooling nor a supported timm tower "
                "(`clipadapt list backbones` shows the families)."
            )
        if getattr(visual, "pool_type", "tok") != "tok" or getattr(visual, "final_ln_after_pool", False):
            raise ClipAdaptError(f"Backbone '{name}' pools its image tokens differently from CLIP; not supported.")

    def set_preprocessing(self, preprocess: str = "crop", normalise: str = "model",
                          interpolation: str = "bicubic") -> "ClipBackbone":
        """Choose how images are prepared for this backbone (kept in cards and store keys)."""
        if (preprocess not in PREPROCESSING or normalise not in ("model", "half")
                or interpolation not in INTERPOLATIONS):
            raise ClipAdaptError(f"Unknown preprocessing {preprocess!r} / normalisation {normalise!r} / interpolation "
                                 f"{interpolation!r}; use {'|'.join(PREPROCESSING)}, model|half and bicubic|bilinear.")
        self.preprocess, self.normalise, self.interpolation = preprocess, normalise, interpolation
        return self

    def set_precision(self, precision: str = "fp32") -> "ClipBackbone":
        """Choose the frozen image pass of `forward_features` at inference: "fp32" (exact,
        the default), "bf16" (bfloat16 matmuls) or "int8" (every block's linear layers int8
        dynamically quantised; CPU only). The lossy two are opt-ins for prediction: measure
        their agreement (`clipadapt.predict.agreement`) before trusting them. Training
        (module in train mode) always runs fp32."""
        if precision not in LOSSY_PRECISIONS + ("fp32",):
            raise ClipAdaptError(f"Unknown precision {precision!r}; use fp32, bf16 or int8.")
        if precision != "fp32" and not self.fast:
            raise ClipAdaptError(f"precision {precision} needs the fused image pass, which backbone '{self.name}' "
                                 "does not support (its blocks differ from CLIP's); use fp32.")
        if precision != self.precision:  # the quantised copies stay valid while the precision does
            self.precision, self._lossy_tower = precision, None
        return self

    def _lossy_encode(self, images: torch.Tensor, tap_block: int | None, embedding: bool):
        if self.precision == "bf16":
            return encode_bf16(self, images, tap_block, embedding)
        if self.precision in CPU_ONLY_PRECISIONS and images.device.type != "cpu":
            raise ClipAdaptError("precision int8 runs on CPU only (dynamic quantisation); use bf16 on a GPU.")
        if self._lossy_tower is None:  # quantised copies of the weights, made once
            self._lossy_tower = Int8Tower(self)
        return self._lossy_tower(images, tap_block, embedding)

    # ------------------------------------------------------------------ geometry
    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    @property
    def num_blocks(self) -> int:
        return len(self.visual.transformer.resblocks)

    @property
    def width(self) -> int:
        return self.visual.transformer.width

    @property
    def embed_dim(self) -> int:
        return self.visual.proj.shape[1]

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.visual.grid_size)

    @property
    def num_patches(self) -> int:
        h, w = self.grid
        return h * w

    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    @property
    def image_mean(self) -> tuple[float, ...]:
        if self.normalise == "half":
            return (0.5, 0.5, 0.5)
        return tuple(getattr(self.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)

    @property
    def image_std(self) -> tuple[float, ...]:
        if self.normalise == "half":
            return (0.5, 0.5, 0.5)
        return tuple(getattr(self.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)

    @property
    def logit_scale(self) -> float:
        """exp(logit_scale), frozen (100 for the OpenAI weights)."""
        return float(self.model.logit_scale.detach().exp().clamp(max=100.0))

    def describe(self) -> dict:
        """Identity of this backbone for cards and cache keys."""
        out = {"name": self.name, "pretrained": self.pretrained, "weights_id": self.weights_id,
               "preprocess": self.preprocess, "normalise": self.normalise}
        # each only when not the default: older store keys and cards stay valid
        if self.interpolation != "bicubic":
            out["interpolation"] = self.interpolation
        if self.family != "clip":
            out["family"] = self.family
        if self.tag:
            out["tag"] = self.tag
        if self.resize_mode != "shortest":
            out["resize_mode"] = self.resize_mode
        if not self.preprocessing_known and self.normalise == "model":  # "half" sets mean/std itself
            out["weights_preprocessing"] = "unknown: a local file of no known tag, normalised with the defaults"
        return out

    @property
    def resize_mode(self) -> str:
        """How the weights expect the test image resized: "shortest" (short side + centre
        crop, CLIP's) or "squash" (straight to the square, e.g. DFN's), from open_clip."""
        return (getattr(self.visual, "preprocess_cfg", None) or {}).get("resize_mode", "shortest")

    def transform_kind(self, train: bool) -> str:
        """The preprocessing kind data/transforms builds: the chosen one, except that "crop"
        squashes at test time for weights trained that way (training crops randomly either way)."""
        if self.preprocess == "crop" and not train and self.resize_mode == "squash":
            return "resize"
        return self.preprocess

    # ------------------------------------------------------------------ image primitives
    def embed(self, images: torch.Tensor, ln_pre: bool = True) -> torch.Tensor:
        """Patchify, prepend [CLS], add positions, ln_pre: [B, 1 + N, D] (`ln_pre=False`
        stops before ln_pre, for methods that add tokens of their own first)."""
        v = self.visual
        x = v.conv1(images.to(v.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(x) if ln_pre else x

    def block(self, index: int, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Run residual block `index` (0-based) on tokens [B, T, D]."""
        return self.visual.transformer.resblocks[index](x, attn_mask=attn_mask)

    def value_path_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Block `index` with attention replaced by its value path (MaskCLIP):
        v = x + out_proj(W_v ln_1(x)); v = v + MLP(ln_2(v)). Each token sees only itself."""
        blk = self.visual.transformer.resblocks[index]
        attn = blk.attn
        d = x.shape[-1]
        w_v = attn.in_proj_weight[2 * d:]
        b_v = attn.in_proj_bias[2 * d:] if attn.in_proj_bias is not None else None
        v = F.linear(blk.ln_1(x), w_v, b_v)
        v = x + blk.ls_1(attn.out_proj(v))
        return v + blk.ls_2(blk.mlp(blk.ln_2(v)))

    def run_blocks(self, x: torch.Tensor, inject=None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Every block in turn on tokens [B, T, D]. `inject(i, x) -> x` runs before block i
        (deep prompts replace their slots there); `attn_mask` [T, T] is additive."""
        for i in range(self.num_blocks):
            if inject is not None:
                x = inject(i, x)
            x = self.block(i, x, attn_mask=attn_mask)
        return x

    def project_tokens(self, x: torch.Tensor, ln_post: bool = True) -> torch.Tensor:
        """Every token through CLIP's output head: ln_post(x) @ proj, [B, T, E]."""
        return (self.visual.ln_post(x) if ln_post else x) @ self.visual.proj

    def run_prompted(self, x: torch.Tensor, inject=None, attn_mask: torch.Tensor | None = None,
                     ln_post: bool = True) -> torch.Tensor:
        """A prompted image pass (PromptPAR): `x` [B, T, D] is laid out as [global slot,
        the method's tokens (prompts, part tokens), patches] after `pre_norm`; every block
        runs with `inject` and the additive `attn_mask` [T, T], then every token goes
        through the output head: [B, T, E]. Slot 0 is [CLS] here, so its output is the
        image embedding (with `ln_post`); other towers say what theirs is."""
        return self.project_tokens(self.run_blocks(x, inject, attn_mask), ln_post=ln_post)

    # ------------------------------------------------------------------ output head, in two halves
    # pool(x) = project(global_token(x)). Methods that pool tokens of their own (microCLIP's
    # SOAP) work in the space between the halves: what the tower pools, before its projection.
    def pre_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The norm after the patch embedding (CLIP's ln_pre), for tokens a method adds first."""
        return self.visual.ln_pre(x)

    def global_token(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled token before the output projection: ln_post(x[:, 0]), [B, D]."""
        return self.visual.ln_post(x[:, 0])

    def project(self, t: torch.Tensor) -> torch.Tensor:
        """The output projection of pooled-space tokens: t @ proj, [..., D] -> [..., E]."""
        return t @ self.visual.proj

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP's image embedding from final tokens: ln_post(x[:, 0]) @ proj, [B, E]."""
        return self.project(self.global_token(x))

    def dense_patches(self, x: torch.Tensor, final: torch.Tensor | None = None, prefix: bool = True) -> torch.Tensor:
        """Value-path patch features in the pooled space (MaskCLIP; SPEC 3): the last block
        run on its value path, then ln_post, patches only: [B, N, D]. Each patch becomes what
        [CLS] would hold had it attended to that patch alone.

        x: tokens entering the last block ([B, T, D]; `prefix=False`: without the prefix
        tokens, as `forward_features` taps them). `final`: the last block's output on x
        when the caller has it (unused here; towers that pool after the blocks need it)."""
        skip = self.num_prefix_tokens if prefix else 0
        return self.visual.ln_post(self.value_path_block(self.num_blocks - 1, x)[:, skip:])

    def image_layernorms(self) -> dict[str, nn.LayerNorm]:
        """Every LayerNorm module of the image tower, keyed by its name under this backbone
        (found by type, so any tower's norms are found: CLIP's ln_pre, ln_1, ln_2, ln_post)."""
        return {f"model.visual.{name}": m for name, m in self.visual.named_modules() if isinstance(m, nn.LayerNorm)}

    def forward_features(self, images: torch.Tensor, tap_block: int | None = None,
                         embedding: bool = True) -> ImageFeatures:
        """The explicit forward: patch tokens after block `tap_block` (1-based, output of
        that block; None = no tokens) and the CLIP image embedding (`embedding=False`:
        tokens only, and the blocks after `tap_block` are skipped)."""
        if tap_block is not None and not 1 <= tap_block <= self.num_blocks:
            raise ClipAdaptError(f"tap_block must be in 1..{self.num_blocks} for {self.name}, got {tap_block}.")
        if not embedding and tap_block is None:
            raise ClipAdaptError("forward_features(embedding=False) needs a tap_block: it would compute nothing.")
        if self.fast and not self.visual.training:
            if self.precision != "fp32":
                return ImageFeatures(*self._lossy_encode(images, tap_block, embedding))
            return ImageFeatures(*fast_encode(self, images, tap_block, embedding))
        x = self.embed(images)
        tapped = None
        for i in range(self.num_blocks if embedding else tap_block):
            x = self.block(i, x)
            if tap_block is not None and i + 1 == tap_block:
                tapped = x[:, self.num_prefix_tokens:]
        return ImageFeatures(tapped, self.pool(x) if embedding else None)

    # ------------------------------------------------------------------ text
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = open_clip.get_tokenizer(self.name)
        return self._tokenizer

    @property
    def tokenizer_name(self) -> str:
        """Which tokenizer the text side uses, for the run card; read from the architecture
        (nothing is loaded): a Hugging Face tokenizer's name, or open_clip's CLIP BPE."""
        text_cfg = (open_clip.get_model_config(self.name) or {}).get("text_cfg", {})
        hub = text_cfg.get("hf_tokenizer_name")
        return f"hf:{hub}" if hub else "open_clip SimpleTokenizer (CLIP BPE)"

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids [K, context_length] for the model's tokenizer."""
        return self.tokenizer(texts)

    @property
    def text_tower(self) -> nn.Module:
        """The module that holds the text transformer: the CLIP model itself, or `model.text`
        for models with a custom text tower (SigLIP, EVA02)."""
        return self.model if getattr(self.model, "token_embedding", None) is not None else self.model.text

    @property
    def text_token_embedding(self) -> nn.Embedding:
        """The text tower's token embedding table."""
        return self.text_tower.token_embedding

    def pooled_text_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """Position [K] whose output is the text feature of each row of token ids: the
        end-of-text token (CLIP: the largest id), the last position (SigLIP), the first,
        or the tokenizer's end-of-sequence id, as the text tower pools."""
        tower = self.text_tower
        kind = getattr(tower, "text_pool_type", None) or getattr(tower, "pool_type", "argmax")
        if kind == "argmax":
            return tokens.argmax(dim=-1)
        if kind in ("last", "first"):
            return torch.full((tokens.shape[0],), tokens.shape[1] - 1 if kind == "last" else 0, dtype=torch.long)
        if kind == "eos":
            eos = getattr(tower, "text_eos_id", None) or getattr(tower, "eos_id", None)
            return (tokens == eos).int().argmax(dim=-1)
        raise ClipAdaptError(f"The text tower of {self.name} pools its tokens as {kind!r}; learned text context "
                             "does not know where to read the feature.")

    @property
    def text_prefix_tokens(self) -> int:
        """Tokens the tokenizer puts before the text: 1 for CLIP's start-of-text, 0 for
        tokenizers without one (SigLIP's). Learned context goes right after them."""
        return 1 if getattr(self.tokenizer, "sot_token_id", None) is not None else 0

    def _text_mask(self):
        tower = self.text_tower
        if getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False):
            raise ClipAdaptError(f"The text tower of {self.name} appends a class token or masks padding (CoCa-style); "
                                 "learned text context is not supported on it.")
        return getattr(tower, "attn_mask", None)

    def _text_output(self, x: torch.Tensor, pooled_index: torch.Tensor) -> torch.Tensor:
        tower = self.text_tower
        x = tower.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), pooled_index.to(x.device)]
        proj = tower.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    @property
    def text_width(self) -> int:
        return self.text_token_embedding.weight.shape[1]

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Input embeddings [K, T, W] of token ids (for learned-context prompts, CoOp)."""
        return self.text_token_embedding(tokens.to(self.text_token_embedding.weight.device))

    def encode_text_embeddings(self, x: torch.Tensor, pooled_index: torch.Tensor) -> torch.Tensor:
        """Text features [K, E] from input embeddings [K, T, W]; features are read at
        `pooled_index` (`pooled_text_index` of the token ids: CLIP's end-of-text token)."""
        tower, mask = self.text_tower, self._text_mask()
        x = x + tower.positional_embedding[:x.shape[1]].to(x.dtype)
        return self._text_output(tower.transformer(x, attn_mask=mask), pooled_index)

    def encode_text_deep(self, x: torch.Tensor, pooled_index: torch.Tensor, inject) -> torch.Tensor:
        """encode_text_embeddings with `inject(i, x) -> x` before text block i (deep text
        prompts placed before the end-of-text token, so the causal mask lets EOT see them)."""
        tower, mask = self.text_tower, self._text_mask()
        x = x + tower.positional_embedding[:x.shape[1]].to(x.dtype)
        for i, block in enumerate(tower.transformer.resblocks):
            x = block(inject(i, x), attn_mask=mask)
        return self._text_output(x, pooled_index)

    @property
    def text_blocks(self) -> int:
        return len(self.text_tower.transformer.resblocks)

    @property
    def patch_size(self) -> int:
        size = self.visual.conv1.kernel_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @torch.no_grad()
    def encode_text(self, texts: list[str] | torch.Tensor, normalise: bool = True) -> torch.Tensor:
        """Frozen text features [K, E] of `texts`: strings, or token ids [K, L] from the
        tokenizer (open_clip's `model.encode_text(tokenizer(texts))` works as written)."""
        device = self.text_token_embedding.weight.device
        tokens = texts if isinstance(texts, torch.Tensor) else self.tokenize(texts)
        feats = self.model.encode_text(tokens.to(device))
        return F.normalize(feats, dim=-1) if normalise else feats
