"""PromptPAR: region-aware prompts for multi-label pedestrian attributes (SPEC 2)."""

from clipadapt.methods.promptpar.model import PromptPAR, PromptPARParams, binary_logits
from clipadapt.methods.promptpar.regions import TokenLayout, region_attention_mask, strips_for_grid

__all__ = ["PromptPAR", "PromptPARParams", "TokenLayout", "binary_logits", "region_attention_mask", "strips_for_grid"]
