"""Two micro timm towers, registered with timm, behind the `clipadapt-micro-map` and
`clipadapt-micro-eva` configs: a SigLIP-shaped ViT (no [CLS], attention-pool head) and an
EVA02-shaped one (rotary positions, SwiGLU, [CLS]), 32 px, 2 blocks, width 64. Random
weights only: they let tests and examples exercise the timm families offline in seconds."""

from __future__ import annotations

from timm.models import register_model
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer

_GEOMETRY = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2)
# what timm.create_model passes that these constructors do not take
_CREATE_ONLY = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "pretrained")


def _own(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k not in _CREATE_ONLY}


@register_model
def clipadapt_micro_siglip(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """SigLIP's tower shape: no class token, MAP (attention-pool) head."""
    return VisionTransformer(**{**_GEOMETRY, "class_token": False, "global_pool": "map", **_own(kwargs)})


@register_model
def clipadapt_micro_eva(pretrained: bool = False, **kwargs) -> Eva:
    """EVA02-CLIP's tower shape: rotary position embeddings, SwiGLU MLP, class token."""
    return Eva(**{**_GEOMETRY, "mlp_ratio": 4 * 2 / 3, "swiglu_mlp": True, "use_rot_pos_emb": True,
                  "ref_feat_shape": (4, 4), **_own(kwargs)})
