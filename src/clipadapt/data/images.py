"""Opening images safely: every failure becomes one message naming the file and its row."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from clipadapt.errors import ClipAdaptError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def load_image(path: Path | str, where: str | None = None) -> Image.Image:
    """Open `path` as RGB, fully decoded; `where` (e.g. 'train/weather.csv row 17') is
    named in the error so the user knows which row to fix."""
    path = Path(path)
    origin = f" ({where})" if where else ""
    if not path.is_file():
        raise ClipAdaptError(f"Image not found: {path}{origin}. Fix the path or remove the row.")
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, not later inside a transform
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ClipAdaptError(
            f"Unreadable image: {path}{origin}: {exc}. Replace the file or remove the row."
        ) from None


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
        return self.sources[index] if self.sources is not None else None

    def __getitem__(self, index: int):
        try:
            image = load_image(self.paths[index], self.where(index))
        except ClipAdaptError as exc:
            if self.on_error == "raise":
                raise
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
            load_image(self.paths[index], self.where(index))
        except ClipAdaptError as exc:
            return str(exc)
        return ""
