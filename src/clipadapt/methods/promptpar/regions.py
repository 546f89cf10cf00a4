"""Region awareness of PromptPAR (SPEC 2): the token layout, the horizontal strips of
patch rows each part token looks at, and the additive attention mask that enforces it.

Layout with G groups of P prompts, Q global prompts and N = H x W patches:
    [CLS, Q global prompts, part_1, P prompts, ..., part_G, P prompts, N patches]
(ViT-L/14 at 224 with the authors' settings: 1 + 10 + 4 * (1 + 10) + 256 = 311 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def strips_for_grid(rows: int, groups: int, overlap: int = 2) -> list[tuple[int, int]]:
    """Inclusive (first, last) patch rows of each strip: the rows cut into `groups`
    equal bands, each band widened by overlap // 2 rows into its neighbours.

    The authors hard-coded 16 rows; this reproduces theirs and works for any grid:

    >>> strips_for_grid(16, 4)
    [(0, 4), (3, 8), (7, 12), (11, 15)]
    >>> strips_for_grid(8, 4)
    [(0, 2), (1, 4), (3, 6), (5, 7)]
    """
    if groups < 1 or rows < groups:
        raise ValueError(f"cannot cut {rows} patch rows into {groups} strips")
    bounds = [round(k * rows / groups) for k in range(groups + 1)]
    half = overlap // 2
    return [(max(0, bounds[k] - half), min(rows - 1, bounds[k + 1] - 1 + half)) for k in range(groups)]


@dataclass(frozen=True)
class TokenLayout:
    """Where each kind of token sits in the prompted sequence."""

    global_prompts: int
    groups: int
    group_prompts: int
    grid: tuple[int, int]

    @property
    def prefix(self) -> int:
        """Tokens before the patches: CLS, global prompts, and per group a part token + prompts."""
        return 1 + self.global_prompts + self.groups * (1 + self.group_prompts)

    @property
    def length(self) -> int:
        return self.prefix + self.grid[0] * self.grid[1]

    def part_index(self, group: int) -> int:
        return 1 + self.global_prompts + group * (1 + self.group_prompts)

    def group_prompt_indices(self, group: int) -> list[int]:
        start = self.part_index(group) + 1
        return list(range(start, start + self.group_prompts))

    def prompt_indices(self) -> list[int]:
        """Slots of all layer prompts, in the order the prompts of a layer are stored:
        global ones first, then group by group."""
        slots = list(range(1, 1 + self.global_prompts))
        for g in range(self.groups):
            slots += self.group_prompt_indices(g)
        return slots

    def part_indices(self) -> list[int]:
        return [self.part_index(g) for g in range(self.groups)]

    def patch_indices_of_strip(self, first_row: int, last_row: int) -> list[int]:
        width = self.grid[1]
        return [self.prefix + r * width + c for r in range(first_row, last_row + 1) for c in range(width)]


def region_attention_mask(layout: TokenLayout, overlap: int = 2) -> torch.Tensor:
    """Additive mask [T, T] (0 = may attend, -inf = may not), row = query token.

    Part token g and its prompts attend only to themselves (their group) and to the
    patches of strip g; CLS, the global prompts and the patches attend to everything.
    """
    t = layout.length
    blocked = torch.zeros(t, t, dtype=torch.bool)
    strips = strips_for_grid(layout.grid[0], layout.groups, overlap) if layout.groups else []
    for g, (first, last) in enumerate(strips):
        rows = [layout.part_index(g), *layout.group_prompt_indices(g)]
        allowed = torch.zeros(t, dtype=torch.bool)
        allowed[rows] = True
        allowed[layout.patch_indices_of_strip(first, last)] = True
        blocked[rows] = ~allowed
    mask = torch.zeros(t, t)
    mask[blocked] = float("-inf")
    return mask
