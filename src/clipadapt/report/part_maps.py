"""PromptPAR's part tokens (SPEC 2): where each one looks inside its region.

Each part token may attend only to its own group (itself and its prompts) and to the
patches of its region (a horizontal strip, or the authors' region for imported runs);
the region mask blocks everything else. The map of part g is its attention in the last
block (heads averaged) on the patches of region g, divided by the share of its
attention that went to patches, so it sums to 1 over the region; outside it is
exactly 0. `patch_share` keeps that share (the rest
went to the group's own tokens), so a reader can tell a part that barely looks at
the image from one that does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clipadapt.errors import ClipAdaptError
from clipadapt.methods.promptpar.regions import region_label


@dataclass
class PartAttention:
    """maps: [B, G, h, w], each part's attention over its region (sums to 1, 0 outside).
    patch_share: [B, G] share of the part token's attention that went to patches.
    regions: (first, last) patch index of each region, inclusive.
    labels: each region in words ('rows 0-4', or 'patches 48-117' when not whole rows)."""

    maps: np.ndarray
    patch_share: np.ndarray
    regions: list[tuple[int, int]]
    labels: list[str]


def require_parts(method) -> None:
    """Raise a ClipAdaptError unless `method` has part tokens (PromptPAR) switched on."""
    if getattr(method, "explain_maps", None) != "parts":
        raise ClipAdaptError(f"part attention is PromptPAR's (a method with part tokens); this run's method is "
                             f"'{getattr(method, 'name', '?')}'.")
    family = getattr(method.backbone, "family", "clip")
    if family != "clip":  # the maps read the weights of CLIP's own attention module (nn.MultiheadAttention)
        raise ClipAdaptError(f"part attention maps are drawn on clip-family backbones; this run's is {family} "
                             f"({method.backbone.name}). Its predictions and scores work as on CLIP.")
    if not method.layout.groups or method.attn_mask is None:
        raise ClipAdaptError("This PromptPAR run has no part tokens (method.params.regions: false), so there is "
                             "no per-part attention to show. Train with regions: true to see it.")


def last_block_input(method, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens entering the last image block [B, T, D], the region mask [T, T]) of
    PromptPAR for preprocessed images [B, 3, S, S]: the method's own sequence, prompt
    replacement and mask, run through the backbone's blocks."""
    bb = method.backbone
    last = bb.num_blocks - 1
    captured: dict[str, torch.Tensor] = {}

    def inject(layer: int, x: torch.Tensor) -> torch.Tensor:
        x = method.visual.inject(layer, x)
        if layer == last:
            captured["x"] = x
        return x

    seq = method.visual.sequence(bb.embed(images, ln_pre=False), bb.pre_norm)
    mask = method.attn_mask.to(seq.dtype)
    bb.run_blocks(seq, inject, mask)  # also runs the last block: a little waste for no copy of the loop
    return captured["x"], mask


def last_block_attention(method, images: torch.Tensor) -> torch.Tensor:
    """Attention weights [B, heads, T, T] (rows = queries) of PromptPAR's last image block."""
    x, mask = last_block_input(method, images)
    block = method.backbone.visual.transformer.resblocks[method.backbone.num_blocks - 1]
    tokens = block.ln_1(x)
    _, weights = block.attn(tokens, tokens, tokens, attn_mask=mask, need_weights=True, average_attn_weights=False)
    return weights


@torch.no_grad()
def part_attention(method, images: torch.Tensor) -> PartAttention:
    """Each part token's attention over its region, for preprocessed images [B, 3, S, S]."""
    require_parts(method)
    method.eval()
    device = next(method.parameters()).device
    weights = last_block_attention(method, images.to(device)).float().mean(dim=1)  # heads averaged: [B, T, T]
    layout = method.layout
    rows, cols = layout.grid
    regions = method.regions()
    b = weights.shape[0]
    maps = np.zeros((b, layout.groups, rows * cols), dtype=np.float32)
    share = np.zeros((b, layout.groups), dtype=np.float32)
    for g, (first, last) in enumerate(regions):
        columns = layout.patch_indices_of_region((first, last))
        on_patches = weights[:, layout.part_index(g), columns]  # [B, region patches]
        total = on_patches.sum(dim=-1)
        share[:, g] = total.cpu().numpy()
        maps[:, g, first:first + len(columns)] = (on_patches / total.clamp_min(1e-12)[:, None]).cpu().numpy()
    labels = [region_label(r, cols) for r in regions]
    return PartAttention(maps.reshape(b, layout.groups, rows, cols), share, regions, labels)
