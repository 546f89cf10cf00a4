"""microCLIP (SPEC 3): Normalised Cut, SOAP pooling, TokenFusion, and the registered `microclip` Method."""

from clipadapt.methods.microclip.fusion import TokenFusion, TokenFusionOutput
from clipadapt.methods.microclip.method import (
    MicroCLIP,
    MicroCLIPOutput,
    MicroCLIPParams,
    description_prototype,
    layernorm_parameters,
    llm_head_row,
    template_embedding,
)
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
    "MicroCLIP",
    "MicroCLIPOutput",
    "MicroCLIPParams",
    "description_prototype",
    "layernorm_parameters",
    "llm_head_row",
    "template_embedding",
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
