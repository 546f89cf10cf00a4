"""microCLIP's saliency (SPEC 3): the Normalised-Cut foreground mask and SOAP's attention
over the patches, read from the method's own image pass (`MicroCLIP.encode`).

attention: alpha over the N patches (the null token's share is kept apart, so patches
plus null sum to 1); mask: 1 where the sign-fixed Fiedler vector marks foreground,
else 0 (absent when the settings use no Normalised Cut, e.g. query: mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clipadapt.errors import ClipAdaptError


@dataclass
class SoapMaps:
    """attention: [B, h, w]; null_weight: [B]; mask: [B, h, w] in {0, 1} or None;
    probabilities: [B, K] of the fused output (what microCLIP predicts)."""

    attention: np.ndarray
    null_weight: np.ndarray
    mask: np.ndarray | None
    probabilities: np.ndarray


def require_soap(method) -> None:
    """Raise a ClipAdaptError unless `method` has SOAP's saliency maps (microCLIP) switched on."""
    if getattr(method, "explain_maps", None) != "saliency":
        raise ClipAdaptError(f"SOAP maps are microCLIP's (a method with saliency maps); this run's method is "
                             f"'{getattr(method, 'name', '?')}'.")
    if method.fusion is None:
        raise ClipAdaptError("This microCLIP run has no SOAP pooling (method.params.use_soap: false), so there is "
                             "no attention map or foreground mask to show.")


@torch.no_grad()
def soap_maps(method, images: torch.Tensor) -> SoapMaps:
    """SOAP attention, null-token weight, NCut foreground mask and class probabilities for
    preprocessed images [B, 3, S, S], from one pass of the method."""
    require_soap(method)
    method.eval()
    device = next(method.parameters()).device
    out = method.encode(images.to(device))
    h, w = method.backbone.grid
    b = images.shape[0]
    soap = out.soap
    mask = soap.ncut.mask.reshape(b, h, w).float().cpu().numpy() if soap.ncut is not None else None
    probabilities = torch.softmax(method.class_logits(out.mixed).float(), dim=-1).cpu().numpy()
    return SoapMaps(soap.patch_weights.float().reshape(b, h, w).cpu().numpy(),
                    soap.null_weight.float().cpu().numpy(), mask, probabilities)
