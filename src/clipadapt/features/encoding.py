"""What a feature-store entry holds and how its images are encoded.

One definition serves every engine that fills entries: the local store filler
(`engine.sources.FeatureBatches`) and the Ray engine (`clipadapt.distributed`) build
the same key, load view v of item i with the same seeded transform, and encode with
the same frozen forward, so features computed anywhere are interchangeable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from clipadapt.backbone import ClipBackbone
from clipadapt.data.images import BadImage, load_image
from clipadapt.data.transforms import describe_transform, transform_for
from clipadapt.features.extract import Encoder
from clipadapt.data.fingerprint import image_list_fingerprint
from clipadapt.features.views import seeded_view_transform

VIEW_SEED = 1234  # base seed of the stored augmented views (part of every entry's key)


def entry_parts(backbone: ClipBackbone, tap_block: int | None, paths: Sequence[Path | str], views: int) -> dict:
    """The key parts of the entry holding `views` views of `paths` (one view = the
    deterministic test view; more = seeded augmented train views)."""
    augment = views > 1
    return {
        "backbone": backbone.describe(),
        "preprocessing": describe_transform("train" if augment else "test", backbone.image_size, backbone.image_mean,
                                            backbone.image_std, backbone.transform_kind(augment), backbone.interpolation),
        "tap": {"block": tap_block, "tokens": "patches"},
        "views": views,
        "view_seed": VIEW_SEED,
        "images": image_list_fingerprint(paths),
    }


def token_shape(backbone: ClipBackbone, tap_block: int | None) -> tuple[int, int] | None:
    """Shape [T, D] of the patch tokens an entry stores per image (None: embeddings only)."""
    return (backbone.num_patches, backbone.width) if tap_block else None


class ItemViews(Dataset):
    """Images of some rows of a list, each through its view's transform: (tensor, item).

    `paths[k]` / `sources[k]` belong to row `items[k]` of the full list; the row number
    (not k) seeds an augmented view, so a view is the same pixels whichever subset or
    machine loads it.
    """

    def __init__(self, paths: Sequence[Path | str], sources: Sequence[str] | None, items: Sequence[int], transform,
                 view_transform=None):
        if len(paths) != len(items):
            raise ValueError(f"{len(paths)} paths for {len(items)} items")
        self.paths, self.sources, self.items = list(paths), sources, [int(i) for i in items]
        self.transform, self.view_transform = transform, view_transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        try:
            image = load_image(self.paths[k], self.sources[k] if self.sources is not None else None)
        except BadImage as exc:  # under data.on_bad_image=skip it would have been left out: say so
            raise exc.with_skip_fix() from None
        item = self.items[k]
        return (self.view_transform(image, item) if self.view_transform is not None else self.transform(image)), item


def view_batches(backbone: ClipBackbone, paths: Sequence[Path | str], sources: Sequence[str] | None,
                 items: Sequence[int], view: int, views: int, batch_size: int,
                 num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (images [B, 3, H, W], item indices [B]) of view `view` of `items` (rows of an
    entry with `views` views; `paths`/`sources` aligned with `items`)."""
    augment = views > 1
    transform = transform_for(backbone.transform_kind(augment), augment, backbone.image_size, backbone.image_mean,
                              backbone.image_std, backbone.interpolation)
    # View v of image i is always the same crop (seeded by (seed, i, v)), so an interrupted
    # or distributed extraction produces identical views.
    view_transform = seeded_view_transform(transform, VIEW_SEED, view) if augment else None
    dataset = ItemViews(paths, sources, items, transform, view_transform)
    yield from DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)


def frozen_encoder(backbone: ClipBackbone, tap_block: int | None, device: torch.device | str = "cpu") -> Encoder:
    """encode(images) -> (tap tokens [B, T, D] or None, embeddings [B, E]) of the frozen backbone."""

    def encode(images: torch.Tensor):
        feats = backbone.forward_features(images.to(device), tap_block)
        return feats.tokens, feats.embedding

    return encode
