"""TokenFusion (SPEC 3, step 5 and fusion): [CLS] and the SOAP [FG] token -> one embedding.

c = normalise(cls_token @ proj), f_hat = normalise(FG @ proj) with the tower's frozen projection,
z = normalise(r c + (1 - r) f_hat), fusion ratio r = 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

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


Projection = Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]


class TokenFusion(nn.Module):
    """Fuse the global [CLS] embedding with the SOAP [FG] token (SPEC 3, "TokenFusion").

    c = normalise(project(cls_token)); f_hat = normalise(project(FG));
    z = normalise(fusion_ratio * c + (1 - fusion_ratio) * f_hat), fusion_ratio = 0.5.
    `project` is the backbone's frozen output projection: CLIP's matrix proj [D, E], or a
    callable [..., D] -> [..., E] (`backbone.project`, which timm towers need: their head
    may be a Linear with a bias). It is passed in, not owned, so the backbone stays its
    single owner and checkpoints hold it once. The only trainable parameters here are
    those of `soap`.

    forward(patches [B, N, D], cls_token [B, D] = the pooled token before projection,
    project) -> `TokenFusionOutput`; `fuse` is the second half, for callers that have c.
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

    def _projector(self, project: Projection) -> Callable[[torch.Tensor], torch.Tensor]:
        if callable(project) and not isinstance(project, torch.Tensor):
            return project
        width = self.soap.width
        if not isinstance(project, torch.Tensor) or project.dim() != 2 or project.shape[0] != width:
            shape = tuple(project.shape) if isinstance(project, torch.Tensor) else type(project).__name__
            raise ValueError(f"proj must be CLIP's image projection of shape [D, E] with D = {width}, or a callable; "
                             f"got shape {shape}")

        def matmul(t: torch.Tensor) -> torch.Tensor:
            return t.to(torch.promote_types(t.dtype, project.dtype)) @ project.to(
                torch.promote_types(t.dtype, project.dtype))

        return matmul

    def fuse(self, cls_embedding: torch.Tensor, soap_out: SOAPOutput, project: Projection) -> TokenFusionOutput:
        """The fusion from c = normalise(project(cls_token)) [B, E] and SOAP's output:
        f_hat = normalise(project(FG)), mixed = r c + (1 - r) f_hat, fused = normalise(mixed)."""
        f_hat = F.normalize(self._projector(project)(soap_out.fg_token), dim=-1)
        mixed = self.fusion_ratio * cls_embedding.to(f_hat.dtype) + (1.0 - self.fusion_ratio) * f_hat
        return TokenFusionOutput(F.normalize(mixed, dim=-1), mixed, cls_embedding, f_hat, soap_out)

    def forward(self, patches: torch.Tensor, cls_token: torch.Tensor, proj: Projection) -> TokenFusionOutput:
        project = self._projector(proj)  # checks a matrix's shape first
        if not isinstance(cls_token, torch.Tensor):
            raise ValueError(f"cls_token must be a tensor of shape [B, D], got {type(cls_token).__name__}")
        soap_out = self.soap(patches, cls_token)  # also checks patches and cls_token shapes
        c = F.normalize(project(cls_token), dim=-1)
        return self.fuse(c, soap_out, project)
