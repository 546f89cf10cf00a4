"""Where a method's inputs come from: the feature store, or images through the backbone.

`FeatureBatches` serves frozen features computed once (the fast path on CPU);
`ImageBatches` decodes and transforms images every time (exact augmentation, or
methods that train something on the image path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from clipadapt.backbone import ClipBackbone, ImageFeatures
from clipadapt.config import FeatureConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.image_dataset import ImageDataset
from clipadapt.data.transforms import transform_for
from clipadapt.features.encoding import VIEW_SEED, entry_parts, frozen_encoder, token_shape, view_batches
from clipadapt.features.reading import entry_batches, release_resident_pages
from clipadapt.features.store import FeatureStore, ViewSampler, extract, feature_key
from clipadapt.methods import FeatureNeeds


def make_transform(backbone: ClipBackbone, train: bool):
    return transform_for(backbone.transform_kind(train), train, backbone.image_size, backbone.image_mean,
                         backbone.image_std, backbone.interpolation)


def store_root(cfg: FeatureConfig) -> Path | None:
    return Path(cfg.dir).expanduser() if cfg.dir else None


class ImageBatches:
    """Batches of transformed images [B, 3, H, W] with their row indices."""

    def __init__(self, images: LabelledImages, transform, num_workers: int = 0, on_error: str = "raise"):
        self.dataset = ImageDataset(images.paths, transform, sources=images.sources, on_error=on_error)
        self.num_workers = num_workers

    def batches(self, order: np.ndarray, batch_size: int, epoch: int = 0) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        loader = DataLoader(Subset(self.dataset, order.tolist()), batch_size=batch_size, shuffle=False,
                            num_workers=self.num_workers)
        for images, index, _ok in loader:
            yield images, index.numpy()


class FeatureBatches:
    """Frozen features of one image list, from the content-keyed feature store.

    The store entry is filled on first use (resumable); train sets may hold several
    augmented views per image, and each epoch draws one view per image.
    """

    def __init__(self, backbone: ClipBackbone, needs: FeatureNeeds, images: LabelledImages, cfg: FeatureConfig,
                 views: int = 1, device: torch.device | str = "cpu", num_workers: int = 0, progress: bool = True):
        parts = entry_parts(backbone, needs.tap_block, images.paths, views)
        self.store = FeatureStore(store_root(cfg)).open(parts, len(images), views, token_shape(backbone, needs.tap_block),
                                                        backbone.embed_dim)
        self.sampler = ViewSampler(views, seed=VIEW_SEED)
        self.key = feature_key(parts)
        if not self.store.complete:

            def make_loader(items, view):
                paths = [images.paths[i] for i in items]
                sources = [images.sources[i] for i in items] if images.sources is not None else None
                return view_batches(backbone, paths, sources, items, view, views, cfg.batch_size, num_workers)

            extract(self.store, make_loader, frozen_encoder(backbone, needs.tap_block, device), device=device,
                    progress=progress)
        release_resident_pages(self.store)  # opening (checksums) or filling the entry touched every page

    def batches(self, order: np.ndarray, batch_size: int, epoch: int = 0) -> Iterator[tuple[ImageFeatures, np.ndarray]]:
        yield from entry_batches(self.store, self.sampler, order, batch_size, epoch)
