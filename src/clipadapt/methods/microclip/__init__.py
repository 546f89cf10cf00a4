"""microCLIP building blocks (SPEC 3): Normalised Cut, SOAP pooling, TokenFusion."""

from clipadapt.methods.microclip.fusion import TokenFusion, TokenFusionOutput
from clipadapt.methods.microclip.ncut import (
    ForegroundSplit,
    NCutResult,
    fiedler_vector,
    foreground_mask,
    normalized_cut,
    patch_affinity,
)
from clipadapt.methods.microclip.soap import SOAP, SOAPOutput, identity_linear

__all__ = [
    "SOAP",
    "ForegroundSplit",
    "NCutResult",
    "SOAPOutput",
    "TokenFusion",
    "TokenFusionOutput",
    "fiedler_vector",
    "foreground_mask",
    "identity_linear",
    "normalized_cut",
    "patch_affinity",
]
