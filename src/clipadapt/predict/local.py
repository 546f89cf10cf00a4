"""Batch prediction on this machine, streaming rows so a large job keeps little in memory.

A bad image does not stop the job: its row gets `ok = False` and the error, and the
probabilities are left empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from clipadapt.data.images import ImageDataset
from clipadapt.engine.io import atomic_write
from clipadapt.engine.sources import make_transform
from clipadapt.engine.trainer import progress_bar
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import Method
from clipadapt.predict.columns import prediction_columns


def predict_images(method: Method, paths: list[Path], device: torch.device, batch_size: int = 64,
                   num_workers: int = 0, progress: bool = True, threshold: float = 0.5) -> pd.DataFrame:
    """Predict every attribute for `paths`: columns path, ok, error, then the prediction
    columns of `prediction_columns` (class + every class probability; for a multi-label
    task the 0/1 decision at `threshold` + the probability)."""
    method.eval().to(device)
    dataset = ImageDataset(paths, make_transform(method.backbone, train=False), on_error="flag")
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    attrs = method.task.attributes
    probs = [np.full((len(paths), a.num_classes), np.nan, dtype=np.float32) for a in attrs]
    ok = np.zeros(len(paths), dtype=bool)
    with progress_bar(progress) as bar, torch.no_grad():
        job = bar.add_task("predict", total=len(paths), info="")
        for images, index, good in loader:
            index, good = index.numpy(), good.numpy().astype(bool)
            if good.any():
                # forward_images: frozen-feature methods and image-path ones (prompts inside the
                # backbone, PromptPAR / microCLIP) alike
                for a, logits in enumerate(method.forward_images(images[good].to(device))):
                    probs[a][index[good]] = torch.softmax(logits.float(), -1).cpu().numpy()
            ok[index] = good
            bar.advance(job, len(index))
    table = {"path": [str(p) for p in paths], "ok": ok,
             "error": ["" if g else dataset.error_for(i) for i, g in enumerate(ok)]}
    table.update(prediction_columns(method.task, probs, threshold, ok))
    return pd.DataFrame(table)


def write_table(table: pd.DataFrame, out: Path) -> Path:
    """Write CSV or Parquet by suffix, atomically."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        atomic_write(out, lambda p: table.to_csv(p, index=False))
    elif suffix in (".parquet", ".pq"):
        atomic_write(out, lambda p: table.to_parquet(p, index=False))
    else:
        raise ClipAdaptError(f"--out {out}: use a .csv or .parquet file name.")
    return out
