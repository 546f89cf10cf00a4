"""TokenFusion (SPEC 3, step 5 and fusion): [CLS] and the SOAP [FG] token -> one embedding.

c = normalise(cls_token @ proj), f_hat = normalise(FG @ proj) with CLIP's frozen projection,
z = normalise(r c + (1 - r) f_hat), fusion ratio r = 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipadapt.methods.microclip.soap import SOAP, SOAPOutput


@dataclass
class TokenFusionOutput:
    """fused: [B, E] z = normalise(mixed), used for pseudo-labels and retrieval.
    mixed: [B, E] r c + (1 - r) f_hat before normalising (the training loss scores
        100 * mixed W*^T, i.e. r CLS logits + (1 - r) FG logits).
    cls_embedding: [B, E] c. fg_embedding: [B, E] f_hat. soap: the SOAP intermediates.
    """

    fused: torch.Tensor
    mixed: torch.Tensor
    cls_embedding: torch.Tensor
    fg_embedding: torch.Tensor
    soap: SOAPOutput


class TokenFusion(nn.Module):
    """Fuse the global [CLS] embedding with the SOAP [FG] token (SPEC 3, "TokenFusion").

    c = normalise(cls_token @ proj); f_hat = normalise(FG @ proj);
    z = normalise(fusion_ratio * c + (1 - fusion_ratio) * f_hat), fusion_ratio = 0.5.
    `proj` is CLIP's frozen image projection [D, E]; it is passed in, not owned, so the
    backbone stays its single owner and checkpoints hold it once. The only trainable
    parameters here are those of `soap`.

    forward(patches [B, N, D], cls_token [B, D] = ln_post(x_L[CLS]), proj [D, E])
        -> `TokenFusionOutput`.
    """

    def __init__(self, soap: SOAP, *, fusion_ratio: float = 0.5):
        super().__init__()
        if not isinstance(soap, SOAP):
            raise ValueError(f"soap must be a SOAP module, got {type(soap).__name__}")
        if not 0.0 <= float(fusion_ratio) <= 1.0:
            raise ValueError(f"fusion_ratio must be in [0, 1] (weight of [CLS]; 1 = CLS only), got {fusion_ratio}")
        self.soap = soap
        self.fusion_ratio = float(fusion_ratio)

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay (SPEC: the identity-init projections)."""
        return {f"soap.{name}" for name in self.soap.no_weight_decay()}

    def extra_repr(self) -> str:
        return f"fusion_ratio={self.fusion_ratio}"

    def forward(self, patches: torch.Tensor, cls_token: torch.Tensor, proj: torch.Tensor) -> TokenFusionOutput:
        width = self.soap.width
        if not isinstance(proj, torch.Tensor) or proj.dim() != 2 or proj.shape[0] != width:
            shape = tuple(proj.shape) if isinstance(proj, torch.Tensor) else type(proj).__name__
            raise ValueError(f"proj must be CLIP's image projection of shape [D, E] with D = {width}, got shape {shape}")
        if not isinstance(cls_token, torch.Tensor):
            raise ValueError(f"cls_token must be a tensor of shape [B, D], got {type(cls_token).__name__}")
        soap_out = self.soap(patches, cls_token)  # also checks patches and cls_token shapes
        dtype = torch.promote_types(soap_out.fg_token.dtype, proj.dtype)
        proj = proj.to(dtype)
        c = F.normalize(cls_token.to(dtype) @ proj, dim=-1)
        f_hat = F.normalize(soap_out.fg_token.to(dtype) @ proj, dim=-1)
        mixed = self.fusion_ratio * c + (1.0 - self.fusion_ratio) * f_hat
        return TokenFusionOutput(F.normalize(mixed, dim=-1), mixed, c, f_hat, soap_out)
