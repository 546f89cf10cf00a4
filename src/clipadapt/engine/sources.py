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
from torch.utils.data import DataLoader, Dataset, Subset

from clipadapt.backbone import ClipBackbone, ImageFeatures
from clipadapt.config import FeatureConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.images import ImageDataset, load_image
from clipadapt.data.transforms import describe_transform, transform_for
from clipadapt.features.store import FeatureStore, ViewSampler, extract, feature_key, image_list_fingerprint, seeded_view_transform
from clipadapt.methods import FeatureNeeds

VIEW_SEED = 1234


def make_transform(backbone: ClipBackbone, train: bool):
    return transform_for(backbone.preprocess, train, backbone.image_size, backbone.image_mean, backbone.image_std)


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


class AugmentedViews(Dataset):
    """Images through a seeded per-(item, view) augmentation: (tensor, index)."""

    def __init__(self, images: LabelledImages, view_transform):
        self.images = images
        self.view_transform = view_transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = load_image(self.images.paths[index], self.images.sources[index] if self.images.sources else None)
        return self.view_transform(image, index), index


class FeatureBatches:
    """Frozen features of one image list, from the content-keyed feature store.

    The store entry is filled on first use (resumable); train sets may hold several
    augmented views per image, and each epoch draws one view per image.
    """

    def __init__(self, backbone: ClipBackbone, needs: FeatureNeeds, images: LabelledImages, cfg: FeatureConfig,
                 views: int = 1, device: torch.device | str = "cpu", num_workers: int = 0, progress: bool = True):
        augment = views > 1  # one view = the deterministic test view; more = random augmented views
        transform = make_transform(backbone, train=augment)
        size, mean, std = backbone.image_size, backbone.image_mean, backbone.image_std
        parts = {
            "backbone": backbone.describe(),
            "preprocessing": describe_transform("train" if augment else "test", size, mean, std, backbone.preprocess),
            "tap": {"block": needs.tap_block, "tokens": "patches"},
            "views": views,
            "view_seed": VIEW_SEED,
            "images": image_list_fingerprint(images.paths),
        }
        token_shape = (backbone.num_patches, backbone.width) if needs.tap_block else None
        self.store = FeatureStore(store_root(cfg)).open(parts, len(images), views, token_shape, backbone.embed_dim)
        self.sampler = ViewSampler(views, seed=VIEW_SEED)
        self.key = feature_key(parts)
        if not self.store.complete:

            def make_loader(items, view):
                # View v of image i is always the same crop (seeded by (seed, i, v)), so an
                # interrupted extraction resumes with identical views.
                view_transform = seeded_view_transform(transform, VIEW_SEED, view) if augment else None
                dataset = AugmentedViews(images, view_transform) if augment else ImageDataset(
                    images.paths, transform, sources=images.sources)
                loader = DataLoader(Subset(dataset, list(items)), batch_size=cfg.batch_size, num_workers=num_workers)
                return ((batch[0], batch[1]) for batch in loader)

            def encode(imgs):
                feats = backbone.forward_features(imgs.to(device), needs.tap_block)
                return feats.tokens, feats.embedding

            extract(self.store, make_loader, encode, device=device, progress=progress)

    def batches(self, order: np.ndarray, batch_size: int, epoch: int = 0) -> Iterator[tuple[ImageFeatures, np.ndarray]]:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            tokens, embeds = self.store.read(idx, self.sampler.views(idx, epoch))
            yield ImageFeatures(tokens, embeds), idx
