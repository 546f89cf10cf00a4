"""Predict's image datasets: large JPEGs decoded at about the size the model needs (the
decoding itself, free of torch, is `predict/draft.py`), images already in memory (the
Python API's PIL images and arrays) and boxes cut from frames (`data/boxes.py`) beside files."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from clipadapt.data.boxes import BoxedImage
from clipadapt.data.image_dataset import ImageDataset
from clipadapt.predict.draft import DRAFT_MARGIN, open_at_size

__all__ = ["DRAFT_MARGIN", "PredictionImages", "SizedImageDataset", "open_at_size"]

# the stand-in path of an in-memory image (never opened: such items are used as given)
IN_MEMORY = Path("<in-memory image>")


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


class PredictionImages(SizedImageDataset):
    """The images of one prediction job: file paths (decoded as `decode` says: "draft" or
    "full") and in-memory 8-bit RGB PIL images (already checked, used as given)."""

    def __init__(self, items: list, transform, size: int, decode: str = "draft", on_error: str = "flag"):
        self.memory = {i: item for i, item in enumerate(items) if isinstance(item, Image.Image)}
        # boxes in frames (data/boxes.py): a bad box is a bad image of its row
        self.boxed = {i: item for i, item in enumerate(items) if isinstance(item, BoxedImage)}
        super().__init__([IN_MEMORY if i in self.memory else item for i, item in enumerate(items)], transform, size,
                         on_error=on_error)
        self.draft = decode == "draft"

    def __getitem__(self, index: int):
        image = self.memory.get(index)
        if image is not None:
            tensor = self.transform(image)
            if self._shape is None:
                self._shape = tuple(tensor.shape)
            return tensor, index, True
        if index in self.boxed:  # decoded in full by `open`, never drafted: the crop is a small part of the frame
            return ImageDataset.__getitem__(self, index)
        return super().__getitem__(index) if self.draft else ImageDataset.__getitem__(self, index)

    def open(self, index: int) -> Image.Image:
        item = self.boxed.get(index)
        return item.open() if item is not None else super().open(index)

    def error_for(self, index: int) -> str:
        return "" if index in self.memory else super().error_for(index)
