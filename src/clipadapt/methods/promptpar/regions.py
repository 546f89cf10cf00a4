"""Region awareness of PromptPAR (SPEC 2): the token layout, the patches each part
token looks at, and the additive attention mask that enforces it.

Two rules give the regions (PromptPARParams.part_regions):
- "strips" (clipadapt's, the default for runs trained here): horizontal strips of
  whole patch rows, derived from any grid (`strips_for_grid`).
- "authors" (imported checkpoints): the regions the authors' code computes, whose
  start offsets are fixed for a 16-wide grid (`authors_regions`); on a 16 x 16 grid
  both rules agree, on ViT-B/16's 14 x 14 grid they do not.

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


# The authors' part start offsets, in patches from the first patch: rows 3, 7 and 11 of
# a 16-wide grid, whatever the grid really is (their build_visual_mask).
AUTHORS_PART_STARTS = (0, 48, 112, 176)
PART_REGION_RULES = ("strips", "authors")


def authors_regions(rows: int, cols: int, groups: int = 4, overlap: int = 2) -> list[tuple[int, int]]:
    """Inclusive (first, last) patch index of each part's region as the PromptPAR
    authors' code computes it: part g covers `size_g * cols` patches from the fixed
    offset AUTHORS_PART_STARTS[g], where the outer parts have rows // groups + overlap // 2
    rows and the inner ones overlap // 2 more; cut at the last patch (an empty region
    has first > last).

    >>> authors_regions(16, 16)  # rows 0-4, 3-8, 7-12, 11-15
    [(0, 79), (48, 143), (112, 207), (176, 255)]
    >>> authors_regions(14, 14)  # not row-aligned on ViT-B/16's grid
    [(0, 55), (48, 117), (112, 181), (176, 195)]
    """
    if not 1 <= groups <= len(AUTHORS_PART_STARTS):
        raise ValueError(f"the authors' regions exist for 1 to {len(AUTHORS_PART_STARTS)} groups, not {groups}")
    base = rows // groups + overlap // 2
    sizes = [base if g in (0, groups - 1) else base + overlap // 2 for g in range(groups)]
    total = rows * cols
    return [(start, min(start + size * cols, total) - 1) for start, size in zip(AUTHORS_PART_STARTS, sizes)]


def part_regions(grid: tuple[int, int], groups: int, overlap: int = 2, rule: str = "strips") -> list[tuple[int, int]]:
    """Inclusive (first, last) patch index of each part's region under `rule` ("strips" | "authors")."""
    rows, cols = grid
    if rule == "authors":
        return authors_regions(rows, cols, groups, overlap)
    if rule != "strips":
        raise ValueError(f"unknown part-region rule {rule!r}; use one of {PART_REGION_RULES}")
    return [(first * cols, (last + 1) * cols - 1) for first, last in strips_for_grid(rows, groups, overlap)]


def region_label(region: tuple[int, int], cols: int) -> str:
    """'rows a-b' for a region of whole rows, else 'patches a-b' (for figure titles)."""
    first, last = region
    if first > last:
        return "no patches"
    if first % cols == 0 and (last + 1) % cols == 0:
        return f"rows {first // cols}-{last // cols}"
    return f"patches {first}-{last}"


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

    def patch_indices_of_region(self, region: tuple[int, int]) -> list[int]:
        """Token indices of the patches first..last (inclusive) of a region."""
        return list(range(self.prefix + region[0], self.prefix + region[1] + 1))


def region_attention_mask(layout: TokenLayout, overlap: int = 2, rule: str = "strips") -> torch.Tensor:
    """Additive mask [T, T] (0 = may attend, -inf = may not), row = query token.

    Part token g and its prompts attend only to themselves (their group) and to the
    patches of region g (`part_regions` under `rule`); CLS, the global prompts and the
    patches attend to everything.
    """
    t = layout.length
    blocked = torch.zeros(t, t, dtype=torch.bool)
    regions = part_regions(layout.grid, layout.groups, overlap, rule) if layout.groups else []
    for g, region in enumerate(regions):
        rows = [layout.part_index(g), *layout.group_prompt_indices(g)]
        allowed = torch.zeros(t, dtype=torch.bool)
        allowed[rows] = True
        allowed[layout.patch_indices_of_region(region)] = True
        blocked[rows] = ~allowed
    mask = torch.zeros(t, t)
    mask[blocked] = float("-inf")
    return mask
