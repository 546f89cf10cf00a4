"""Batch prediction with an exported ONNX file: the decoding, skip rules and table of
`clipadapt.predict.local.predict_images`, with onnxruntime in place of torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from clipadapt.data.boxes import BoxedImage
from clipadapt.data.images import load_image
from clipadapt.errors import ClipAdaptError
from clipadapt.predict.columns import probability_table
from clipadapt.predict.draft import open_at_size
from clipadapt.runtime.model import OnnxModel

if TYPE_CHECKING:
    import pandas


def decode_image(model: OnnxModel, path: Path | Image.Image | BoxedImage, decode: str) -> tuple[np.ndarray | None, str]:
    """(float32 [3, S, S], "") for a usable image, (None, the reason) for a bad one: the
    draft decoding of large JPEGs (predict/draft.py), else the checked full decode, as
    `predict --checkpoint` does. An in-memory RGB PIL image (the Python API's) is used as
    given; a box in a frame (data/boxes.py) is cut from the fully decoded frame, as the
    torch engine cuts it."""
    if isinstance(path, Image.Image):
        return model.transform(path), ""
    if isinstance(path, BoxedImage):
        try:
            return model.transform(path.open()), ""
        except ClipAdaptError as exc:
            return None, str(exc)
    image = open_at_size(path, model.image_size) if decode == "draft" else None
    if image is None:
        try:
            image = load_image(path)
        except ClipAdaptError as exc:
            return None, str(exc)
    return model.transform(image), ""


def predict_onnx(model: OnnxModel | str | Path, paths: list, batch_size: int = 64, threshold: float | None = None,
                 on_bad_image: str = "skip", decode: str = "draft", num_workers: int = 0) -> "pandas.DataFrame":
    """Predict every attribute for `paths` with `model` (an OnnxModel or the path of an
    exported file): the columns of `predict_images` (path, ok, error, then the prediction
    columns). `threshold` None: the ones stored in the file (the run's, per attribute); a
    number decides every attribute with it. num_workers > 0
    decodes that many images at a time in threads (Pillow releases the GIL while decoding).
    An item of `paths` may be an RGB PIL image (its path cell is None)."""
    model = model if isinstance(model, OnnxModel) else OnnxModel(model)
    probs, ok, errors = onnx_probabilities(model, paths, batch_size, on_bad_image, decode, num_workers)
    cut = model.thresholds if threshold is None else threshold
    return probability_table(model.task, paths, probs, ok, errors, cut)


def onnx_probabilities(model: OnnxModel, paths: list, batch_size: int = 64, on_bad_image: str = "skip",
                       decode: str = "draft", num_workers: int = 0) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """The pass behind `predict_onnx`: per attribute [N, K] probabilities (NaN rows for
    unusable images), which images were usable, and why the others were not."""
    if on_bad_image not in ("skip", "fail"):
        raise ClipAdaptError(f"on_bad_image must be 'skip' or 'fail', got '{on_bad_image}'.")
    if decode not in ("draft", "full"):
        raise ClipAdaptError(f"decode must be 'draft' or 'full', got '{decode}'.")
    paths = [p if isinstance(p, (Image.Image, BoxedImage)) else Path(p) for p in paths]
    probs = [np.full((len(paths), a.num_classes), np.nan, dtype=np.float32) for a in model.task.attributes]
    ok = np.zeros(len(paths), dtype=bool)
    errors = [""] * len(paths)
    pool = ThreadPoolExecutor(num_workers) if num_workers > 0 else None
    try:
        for start in range(0, len(paths), batch_size):
            rows = range(start, min(start + batch_size, len(paths)))
            decoded = (pool.map(lambda i: decode_image(model, paths[i], decode), rows) if pool
                       else (decode_image(model, paths[i], decode) for i in rows))
            good, arrays = [], []
            for i, (array, error) in zip(rows, decoded):
                if array is None:
                    if on_bad_image == "fail":
                        raise ClipAdaptError(f"{error} (--on-bad-image skip leaves such images out.)")
                    errors[i] = error
                    continue
                good.append(i)
                arrays.append(array)
            if good:
                for a, p in enumerate(model.probabilities(np.stack(arrays))):
                    probs[a][good] = p
                ok[good] = True
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return probs, ok, errors
