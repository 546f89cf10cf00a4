"""Hugging Face `transformers` CLIPModel / SiglipModel weights -> open_clip parameter names.

The facts (parameter names, the packed q/k/v order, the transposed projections) are
those of transformers' `convert_clip_original_pytorch_to_hf.py` and
`convert_siglip_to_hf.py` read backwards, and of timm's ViT for SigLIP's image tower:

CLIP (open_clip `CLIP`)                          <- transformers `CLIPModel`
  visual.conv1 / class_embedding / positional_embedding
                                                 <- vision_model.embeddings.{patch_embedding, class_embedding, position_embedding}
  visual.ln_pre, visual.ln_post                  <- vision_model.pre_layrnorm, post_layernorm
  visual.transformer.resblocks.i.attn.in_proj_*  <- encoder.layers.i.self_attn.{q,k,v}_proj (stacked q, k, v)
  ...resblocks.i.{attn.out_proj, ln_1, ln_2, mlp.c_fc, mlp.c_proj}
                                                 <- ...layers.i.{self_attn.out_proj, layer_norm1, layer_norm2, mlp.fc1, mlp.fc2}
  visual.proj, text_projection                   <- visual_projection.weight.T, text_projection.weight.T
  token_embedding, positional_embedding, transformer.resblocks.i..., ln_final
                                                 <- text_model.{embeddings.token_embedding, embeddings.position_embedding, encoder.layers.i..., final_layer_norm}
SigLIP (open_clip `CustomTextCLIP` with a timm trunk) <- transformers `SiglipModel`
  visual.trunk.patch_embed.proj, pos_embed       <- vision_model.embeddings.{patch_embedding, position_embedding} (pos_embed gets a batch axis)
  visual.trunk.blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}
                                                 <- ...layers.i.{layer_norm1, self_attn.{q,k,v}_proj stacked, self_attn.out_proj, layer_norm2, mlp.fc1, mlp.fc2}
  visual.trunk.norm                              <- vision_model.post_layernorm
  visual.trunk.attn_pool.{latent, q, kv, proj, norm, mlp}
                                                 <- vision_model.head.{probe, attention.in_proj (q | k, v), attention.out_proj, layernorm, mlp}
  text.{token_embedding, positional_embedding, transformer.resblocks.i..., ln_final, text_projection}
                                                 <- text_model.{embeddings..., encoder.layers.i..., final_layer_norm, head}
  logit_scale, logit_bias                        <- logit_scale, logit_bias (shape [1] -> scalar)

Every tensor of the checkpoint is used exactly once: a missing one, or one left over,
is an error naming it (no silent drops).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from clipadapt.errors import ClipAdaptError

# the block layout each target uses: (its name, transformers' name) pairs, and where q/k/v go packed
_OPEN_CLIP_BLOCK = ((("ln_1", "layer_norm1"), ("attn.out_proj", "self_attn.out_proj"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")), ("attn.in_proj_weight", "attn.in_proj_bias"))
_TIMM_BLOCK = ((("norm1", "layer_norm1"), ("attn.proj", "self_attn.out_proj"), ("norm2", "layer_norm2"),
                ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")), ("attn.qkv.weight", "attn.qkv.bias"))

# transformers' `hidden_act` -> the module open_clip / timm run (gelu_new is the tanh formula too)
ACTIVATIONS = {
    "quick_gelu": lambda: _quick_gelu()(),
    "gelu": nn.GELU,
    "gelu_pytorch_tanh": partial(nn.GELU, approximate="tanh"),
    "gelu_new": partial(nn.GELU, approximate="tanh"),
}
_ACTIVATION_CLASSES = {"GELU", "GELUTanh", "QuickGELU"}  # torch's, timm's and open_clip's


def _quick_gelu():
    from open_clip.transformer import QuickGELU

    return QuickGELU


class _Checkpoint:
    """The transformers tensors, handed out once each; what is asked for and absent, or
    never asked for, is reported by `finish`."""

    def __init__(self, state: dict[str, torch.Tensor], source: str):
        # position_ids are buffers older transformers versions saved; they carry no weights
        self.left = {k: v for k, v in state.items() if not k.endswith("position_ids")}
        self.source = source
        self.missing: list[str] = []

    def take(self, key: str) -> torch.Tensor | None:
        if key not in self.left:
            self.missing.append(key)
            return None
        return self.left.pop(key)

    def finish(self, out: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
        problems = []
        if self.missing:
            problems.append(f"{len(self.missing)} tensors missing (e.g. {self.missing[:3]})")
        if self.left:
            problems.append(f"{len(self.left)} tensors not part of a {kind} (e.g. {sorted(self.left)[:3]})")
        if problems:
            raise ClipAdaptError(f"{self.source} is not a complete transformers {kind} checkpoint: "
                                 + "; ".join(problems) + ". Save the whole model with save_pretrained "
                                 f"({kind}, not one tower alone).")
        return out


def _copy(ckpt: _Checkpoint, out: dict, dst: str, src: str, params=("weight", "bias")) -> None:
    for p in params:
        tensor = ckpt.take(f"{src}.{p}")
        if tensor is not None:
            out[f"{dst}.{p}"] = tensor


def _blocks(ckpt: _Checkpoint, out: dict, dst: str, src: str, layers: int, layout) -> None:
    """Encoder layers `src`.i -> residual blocks `dst`.i, q/k/v stacked into one projection."""
    pairs, (qkv_weight, qkv_bias) = layout
    for i in range(layers):
        d, s = f"{dst}.{i}", f"{src}.{i}"
        for ours, theirs in pairs:
            _copy(ckpt, out, f"{d}.{ours}", f"{s}.{theirs}")
        for packed, p in ((qkv_weight, "weight"), (qkv_bias, "bias")):
            parts = [ckpt.take(f"{s}.self_attn.{x}_proj.{p}") for x in "qkv"]
            if all(t is not None for t in parts):
                out[f"{d}.{packed}"] = torch.cat(parts, dim=0)


def _one(ckpt: _Checkpoint, out: dict, dst: str, src: str, transform=lambda t: t) -> None:
    tensor = ckpt.take(src)
    if tensor is not None:
        out[dst] = transform(tensor)


def _text_tower(ckpt: _Checkpoint, out: dict, dst: str, layers: int) -> None:
    """transformers' text encoder (same in CLIP and SigLIP) -> open_clip's text transformer
    at `dst` ("" for CLIP, whose text tower sits on the model; "text." for SigLIP)."""
    _one(ckpt, out, f"{dst}token_embedding.weight", "text_model.embeddings.token_embedding.weight")
    _one(ckpt, out, f"{dst}positional_embedding", "text_model.embeddings.position_embedding.weight")
    _blocks(ckpt, out, f"{dst}transformer.resblocks", "text_model.encoder.layers", layers, _OPEN_CLIP_BLOCK)
    _copy(ckpt, out, f"{dst}ln_final", "text_model.final_layer_norm")


def convert_clip(state: dict[str, torch.Tensor], vision_layers: int, text_layers: int,
                 source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A transformers CLIPModel state dict as open_clip CLIP's (see the module docstring)."""
    ckpt, out = _Checkpoint(state, source), {}
    v = "vision_model"
    _one(ckpt, out, "visual.conv1.weight", f"{v}.embeddings.patch_embedding.weight")
    _one(ckpt, out, "visual.class_embedding", f"{v}.embeddings.class_embedding")
    _one(ckpt, out, "visual.positional_embedding", f"{v}.embeddings.position_embedding.weight")
    _copy(ckpt, out, "visual.ln_pre", f"{v}.pre_layrnorm")  # sic: transformers' spelling
    _blocks(ckpt, out, "visual.transformer.resblocks", f"{v}.encoder.layers", vision_layers, _OPEN_CLIP_BLOCK)
    _copy(ckpt, out, "visual.ln_post", f"{v}.post_layernorm")
    _one(ckpt, out, "visual.proj", "visual_projection.weight", lambda t: t.t().contiguous())
    _text_tower(ckpt, out, "", text_layers)
    _one(ckpt, out, "text_projection", "text_projection.weight", lambda t: t.t().contiguous())
    _one(ckpt, out, "logit_scale", "logit_scale", lambda t: t.reshape(()))
    return ckpt.finish(out, "CLIPModel")


def convert_siglip(state: dict[str, torch.Tensor], vision_layers: int, text_layers: int,
                   source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A transformers SiglipModel state dict as open_clip's SigLIP (timm trunk + open_clip
    text tower; see the module docstring)."""
    ckpt, out = _Checkpoint(state, source), {}
    v, t = "vision_model", "visual.trunk"
    _copy(ckpt, out, f"{t}.patch_embed.proj", f"{v}.embeddings.patch_embedding")
    _one(ckpt, out, f"{t}.pos_embed", f"{v}.embeddings.position_embedding.weight", lambda x: x.unsqueeze(0))
    _blocks(ckpt, out, f"{t}.blocks", f"{v}.encoder.layers", vision_layers, _TIMM_BLOCK)
    _copy(ckpt, out, f"{t}.norm", f"{v}.post_layernorm")
    _one(ckpt, out, f"{t}.attn_pool.latent", f"{v}.head.probe")
    for p in ("weight", "bias"):  # nn.MultiheadAttention packs q | k | v; timm's pool splits q from k, v
        packed = ckpt.take(f"{v}.head.attention.in_proj_{p}")
        if packed is not None:
            width = packed.shape[0] // 3
            out[f"{t}.attn_pool.q.{p}"], out[f"{t}.attn_pool.kv.{p}"] = packed[:width], packed[width:]
    _copy(ckpt, out, f"{t}.attn_pool.proj", f"{v}.head.attention.out_proj")
    _copy(ckpt, out, f"{t}.attn_pool.norm", f"{v}.head.layernorm")
    _copy(ckpt, out, f"{t}.attn_pool.mlp.fc1", f"{v}.head.mlp.fc1")
    _copy(ckpt, out, f"{t}.attn_pool.mlp.fc2", f"{v}.head.mlp.fc2")
    _text_tower(ckpt, out, "text.", text_layers)
    _copy(ckpt, out, "text.text_projection", "text_model.head")
    _one(ckpt, out, "logit_scale", "logit_scale", lambda x: x.reshape(()))
    _one(ckpt, out, "logit_bias", "logit_bias", lambda x: x.reshape(()))
    return ckpt.finish(out, "SiglipModel")


def set_activation(tower: nn.Module, hidden_act: str, where: str) -> None:
    """Make every MLP activation of `tower` the one transformers' config names (e.g. the
    tanh GELU of SigLIP, which open_clip's SigLIP builds as the exact one; QuickGELU of
    OpenAI's CLIP), so the converted model computes what the checkpoint was trained with."""
    make = ACTIVATIONS.get(hidden_act)
    if make is None:
        raise ClipAdaptError(f"{where}: hidden_act '{hidden_act}' is not one open_clip runs "
                             f"(known: {', '.join(ACTIVATIONS)}).")
    for parent in list(tower.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child).__name__ in _ACTIVATION_CLASSES:
                setattr(parent, child_name, make())
