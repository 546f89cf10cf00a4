"""A Dataset of transformed images for torch's DataLoader (the decoding itself lives in
`clipadapt.data.images`, which stays free of torch so the ONNX runtime can share it)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from clipadapt.data.images import BadImage, load_image
from clipadapt.errors import ClipAdaptError


class ImageDataset(Dataset):
    """Transformed images with their row index: items are (tensor, index, ok).

    on_error="raise": a bad image stops with a ClipAdaptError naming file and row.
    on_error="flag": a bad image gives a zero tensor and ok=False (large prediction
    jobs continue); the reason is kept in `errors` (per process) and `error_for(i)`.
    """

    def __init__(self, paths, transform, sources: list[str] | None = None, on_error: str = "raise"):
        if on_error not in ("raise", "flag"):
            raise ValueError("on_error must be 'raise' or 'flag'")
        self.paths = [Path(p) for p in paths]
        self.transform = transform
        self.sources = sources
        self.on_error = on_error
        self.errors: dict[int, str] = {}
        self._shape: tuple | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, index: int) -> str | None:
        """Where row `index` came from (e.g. a manifest line), for messages."""
        return self.sources[index] if self.sources is not None else None

    def open(self, index: int) -> Image.Image:
        """Image `index` decoded and checked (BadImage when it cannot be used); a subclass
        whose rows are not plain files (predict's boxes in frames) says how to open them."""
        return load_image(self.paths[index], self.where(index))

    def __getitem__(self, index: int):
        try:
            image = self.open(index)
        except ClipAdaptError as exc:
            if self.on_error == "raise":  # the fail policy stopped the run here: offer the skip policy too
                raise (exc.with_skip_fix() if isinstance(exc, BadImage) else exc) from None
            self.errors[index] = str(exc)
            return torch.zeros(self._placeholder_shape()), index, False
        tensor = self.transform(image) if self.transform is not None else image
        if self._shape is None and isinstance(tensor, torch.Tensor):
            self._shape = tuple(tensor.shape)
        return tensor, index, True

    def _placeholder_shape(self) -> tuple:
        if self._shape is None:
            # Build the shape from a blank image so a bad first file still batches correctly.
            self._shape = tuple(self.transform(Image.new("RGB", (8, 8))).shape)
        return self._shape

    def error_for(self, index: int) -> str:
        """Why image `index` could not be used (re-checked, so it works after worker processes)."""
        if index in self.errors:
            return self.errors[index]
        try:
            self.open(index)
        except ClipAdaptError as exc:
            return str(exc)
        return ""
