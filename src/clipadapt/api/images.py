"""What `Run.predict` accepts as images, turned into one list: file paths (folders, globs
and manifests listed as `clipadapt predict` lists them) and in-memory 8-bit RGB PIL images
(PIL images and H x W x 3 uint8 arrays). Torch-free: an exported ONNX run uses it too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

from clipadapt.data.images import MAX_ASPECT_RATIO, MAX_PIXELS, BadImage, to_rgb, upright
from clipadapt.errors import ClipAdaptError

# one image, or where images are: what `images` may hold (alone or in a list)
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


def gather_with_table(images: ImageInput | Sequence[ImageInput]):
    """One item per image, and row for row with them the manifests' own columns. Items: a
    Path for a file (folders, glob patterns and CSV/Parquet manifests expanded, in
    `clipadapt predict`'s order) or an upright RGB PIL image for an in-memory one; columns:
    text, missing for images given otherwise, as `clipadapt predict` reads them
    (predict/places.py's `collect_inputs`), so the API's table carries the same columns.
    `images`: one input or a list / tuple of them."""
    import pandas as pd

    from clipadapt.predict.places import collect_inputs

    items, frames = [], []
    for position, one in enumerate(images if isinstance(images, (list, tuple)) else [images]):
        where = position if isinstance(images, (list, tuple)) else None
        if isinstance(one, (str, os.PathLike)):
            found, frame = collect_inputs([one])
        else:
            found, frame = _one(one, where), pd.DataFrame(index=range(1))
        items += found
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    return items, table.astype("string")


def _one(image, position: int | None) -> list[Path | Image.Image]:
    where = f"images[{position}]" if position is not None else "images"
    if isinstance(image, Image.Image):
        return [_checked_pil(image, where)]
    if isinstance(image, np.ndarray):
        return [_from_array(image, where)]
    raise ClipAdaptError(f"{where} is a {type(image).__name__}; give a file, folder or glob path, a PIL image, or an "
                         "H x W x 3 uint8 numpy array (or a list of them).")


def _checked_pil(image: Image.Image, where: str) -> Image.Image:
    """The image as the file route would give it: decoded, upright (EXIF), 8-bit RGB."""
    _check_size(image.size, where)
    try:
        image.load()
    except Exception as exc:  # a lazily opened, truncated file decodes only now
        raise BadImage(f"Unreadable image: {where}: cannot be decoded ({type(exc).__name__}: {exc}).") from None
    return to_rgb(upright(image))


def _from_array(array: np.ndarray, where: str) -> Image.Image:
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        hint = (" It looks channels-first: pass array.transpose(1, 2, 0)." if array.ndim == 3 and array.shape[0] == 3
                else " Convert it with (array * 255).round().astype('uint8') if it holds 0..1 floats."
                if array.dtype.kind == "f" else "")
        raise ClipAdaptError(f"{where}: an image array must be H x W x 3 uint8 (RGB); got shape {tuple(array.shape)}, "
                             f"dtype {array.dtype}.{hint}")
    _check_size((array.shape[1], array.shape[0]), where)
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def _check_size(size: tuple[int, int], where: str) -> None:
    """The limits a file must pass (data/images.py), for an image given in memory."""
    width, height = size
    if width < 1 or height < 1:
        raise BadImage(f"Unusable image: {where} has no pixels ({width} x {height}).")
    if width * height > MAX_PIXELS:
        raise BadImage(f"Unusable image: {where} has {width} x {height} pixels, over the limit of {MAX_PIXELS:,}; "
                       "set CLIPADAPT_MAX_IMAGE_PIXELS higher if it is genuine.")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise BadImage(f"Unusable image: {where} is {width} x {height}, a strip, not a photo (sides differ more than "
                       f"{MAX_ASPECT_RATIO}x); crop it.")
