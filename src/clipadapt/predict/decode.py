"""Predict's image datasets: large JPEGs decoded at about the size the model needs (the
decoding itself, free of torch, is `predict/draft.py`)."""

from __future__ import annotations

import torch

from clipadapt.data.image_dataset import ImageDataset
from clipadapt.predict.draft import DRAFT_MARGIN, open_at_size

__all__ = ["DRAFT_MARGIN", "SizedImageDataset", "open_at_size"]


class SizedImageDataset(ImageDataset):
    """ImageDataset whose large JPEGs are decoded at reduced scale (see `open_at_size`);
    everything else, bad files included, goes through ImageDataset unchanged."""

    def __init__(self, paths, transform, size: int, sources: list[str] | None = None, on_error: str = "raise"):
        super().__init__(paths, transform, sources=sources, on_error=on_error)
        self.size = size

    def __getitem__(self, index: int):
        image = open_at_size(self.paths[index], self.size)
        if image is None:
            return super().__getitem__(index)
        tensor = self.transform(image)
        if self._shape is None and isinstance(tensor, torch.Tensor):
            self._shape = tuple(tensor.shape)  # the placeholder shape for bad rows (ImageDataset's contract)
        return tensor, index, True
