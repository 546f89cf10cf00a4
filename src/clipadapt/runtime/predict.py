"""Batch prediction with an exported ONNX file: the decoding, skip rules and table of
`clipadapt.predict.local.predict_images`, with onnxruntime in place of torch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.data.images import load_image
from clipadapt.errors import ClipAdaptError
from clipadapt.predict.columns import prediction_columns
from clipadapt.predict.draft import open_at_size
from clipadapt.runtime.model import OnnxModel


def decode_image(model: OnnxModel, path: Path, decode: str) -> tuple[np.ndarray | None, str]:
    """(float32 [3, S, S], "") for a usable image, (None, the reason) for a bad one: the
    draft decoding of large JPEGs (predict/draft.py), else the checked full decode, as
    `predict --checkpoint` does."""
    image = open_at_size(path, model.image_size) if decode == "draft" else None
    if image is None:
        try:
            image = load_image(path)
        except ClipAdaptError as exc:
            return None, str(exc)
    return model.transform(image), ""


def predict_onnx(model: OnnxModel | str | Path, paths: list[Path], batch_size: int = 64, threshold: float | None = None,
                 on_bad_image: str = "skip", decode: str = "draft", num_workers: int = 0) -> pd.DataFrame:
    """Predict every attribute for `paths` with `model` (an OnnxModel or the path of an
    exported file): the columns of `predict_images` (path, ok, error, then the prediction
    columns). `threshold` None: the one stored in the file (the run's). num_workers > 0
    decodes that many images at a time in threads (Pillow releases the GIL while decoding)."""
    if on_bad_image not in ("skip", "fail"):
        raise ClipAdaptError(f"on_bad_image must be 'skip' or 'fail', got '{on_bad_image}'.")
    if decode not in ("draft", "full"):
        raise ClipAdaptError(f"decode must be 'draft' or 'full', got '{decode}'.")
    model = model if isinstance(model, OnnxModel) else OnnxModel(model)
    paths = [Path(p) for p in paths]
    cut = model.threshold if threshold is None else threshold
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
    table = {"path": [str(p) for p in paths], "ok": ok, "error": errors}
    table.update(prediction_columns(model.task, probs, cut, ok))
    return pd.DataFrame(table)
