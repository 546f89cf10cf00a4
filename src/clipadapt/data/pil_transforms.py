"""Test-time preprocessing with Pillow and numpy alone, for the ONNX runtime (no torch).

The same pixels as torchvision's test transforms in `data/transforms.py` on PIL images
(torchvision resizes a PIL image with `Image.resize`, crops with `Image.crop`, and
`ToTensor` + `Normalize` are one float32 division and one subtraction / division per
channel), checked value for value in tests/test_onnx_export.py:
    crop:      Resize(short side) + CenterCrop
    letterbox: pad to a black square, Resize((S, S))
    resize:    Resize((S, S))
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

PREPROCESSING = ("crop", "letterbox", "resize")
PIL_INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def pad_to_square(image: Image.Image) -> Image.Image:
    """`image` (PIL) centred on a black RGB square of side max(width, height)."""
    side = max(image.size)
    square = Image.new("RGB", (side, side))
    square.paste(image.convert("RGB"), ((side - image.width) // 2, (side - image.height) // 2))
    return square


def _resize(image: Image.Image, width: int, height: int, interpolation: str) -> Image.Image:
    if image.size == (width, height):  # torchvision returns the image untouched then
        return image
    return image.resize((width, height), PIL_INTERPOLATIONS[interpolation])


def resize_short_side(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    """torchvision's Resize(size): the short side to `size`, the long one int(size * long / short)."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    return _resize(image, new_w, new_h, interpolation)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's CenterCrop(size) of an image at least `size` on both sides."""
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def normalised_array(image: Image.Image, mean, std) -> np.ndarray:
    """ToTensor + Normalize: float32 [3, H, W], (pixel / 255 - mean) / std."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).astype(np.float32)
    pixels /= np.float32(255)
    mean = np.asarray(mean, dtype=np.float32)[:, None, None]
    std = np.asarray(std, dtype=np.float32)[:, None, None]
    return (pixels - mean) / std


def array_transform(preprocess: str, image_size: int, mean, std,
                    interpolation: str = "bicubic") -> Callable[[Image.Image], np.ndarray]:
    """The test transform of a preprocessing kind: PIL RGB image -> float32 [3, S, S]."""
    if preprocess not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {preprocess!r}; use one of {PREPROCESSING}")
    if interpolation not in PIL_INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; use one of {sorted(PIL_INTERPOLATIONS)}")

    def transform(image: Image.Image) -> np.ndarray:
        if preprocess == "crop":
            shaped = center_crop(resize_short_side(image, image_size, interpolation), image_size)
        else:
            square = pad_to_square(image) if preprocess == "letterbox" else image
            shaped = _resize(square, image_size, image_size, interpolation)
        return normalised_array(shaped, mean, std)

    return transform
