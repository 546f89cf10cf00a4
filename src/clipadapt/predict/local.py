"""Batch prediction on this machine, streaming rows so a large job keeps little in memory.

on_bad_image="skip" (default): a bad image does not stop the job; its row gets
`ok = False` and the error, and the probabilities are left empty. on_bad_image="fail":
the first bad image stops the job with its message, and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from clipadapt.engine.sources import make_transform
from clipadapt.bars import progress_bar
from clipadapt.threads import recheck_share, share_cores
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import Method
from clipadapt.predict.agreement import check_precision_applies, measure_agreement
from clipadapt.predict.decode import PredictionImages
from clipadapt.predict.columns import Thresholds, probability_table


def predict_images(method: Method, paths: list, device: torch.device, batch_size: int = 64,
                   num_workers: int = 0, progress: bool = True, threshold: Thresholds = 0.5,
                   on_bad_image: str = "skip", decode: str = "draft", precision: str = "fp32",
                   check_agreement: bool = True, prepare: bool = True) -> pd.DataFrame:
    """Predict every attribute for `paths`: columns path, ok, error, then the prediction
    columns of `prediction_columns` (class + every class probability; for a multi-label
    task the 0/1 decision at `threshold`, one number or one per attribute, + the probability). decode="draft" decodes large
    JPEGs at reduced scale (predict/decode.py), "full" decodes every pixel first; with
    num_workers > 0 decoding overlaps the model's compute. precision "bf16" / "int8" runs the
    frozen backbone pass lossily (opt-in); its agreement with fp32 on the first batch is
    measured and left in `table.attrs["agreement"]` (a `predict.agreement.Agreement`; None
    at fp32 or with check_agreement=False). An item of `paths` may be an RGB PIL image
    (the Python API's in-memory images): its path cell is None. `prepare`: see
    `predict_probabilities`."""
    found = predict_probabilities(method, paths, device, batch_size=batch_size, num_workers=num_workers,
                                  progress=progress, on_bad_image=on_bad_image, decode=decode, precision=precision,
                                  check_agreement=check_agreement, prepare=prepare)
    frame = probability_table(method.task, paths, found.probs, found.ok, found.errors, threshold)
    frame.attrs["agreement"] = found.agreement
    return frame


@dataclass
class Probabilities:
    """What a prediction pass found: per attribute [N, K] class probabilities (NaN rows for
    unusable images), which images were usable (`ok`), why the others were not (`errors`,
    "" for usable ones), and the lossy precision's agreement with fp32 (or None)."""

    probs: list[np.ndarray]
    ok: np.ndarray
    errors: list[str]
    agreement: object = None


def prepare_method(method: Method, device: torch.device, precision: str = "fp32") -> None:
    """Put `method` in eval mode on `device` at `precision`, once before predicting (these
    change the module: a caller predicting from several threads prepares it first)."""
    check_precision_applies(method, precision)
    method.eval().to(device)
    method.backbone.set_precision(precision)


def batch_probabilities(method: Method, images: torch.Tensor, device: torch.device) -> list[np.ndarray]:
    """Per attribute the [B, K] float32 class probabilities of one batch of transformed
    images [B, 3, H, W] (a prepared method: `prepare_method`). The one forward both
    `predict_probabilities` and `clipadapt serve`'s batcher run, so they agree."""
    with torch.inference_mode():  # outputs go to numpy: no autograd record
        # forward_images: frozen-feature methods and image-path ones (prompts inside the
        # backbone, PromptPAR / microCLIP) alike
        return [torch.softmax(logits.float(), -1).cpu().numpy() for logits in method.forward_images(images.to(device))]


def predict_probabilities(method: Method, paths: list, device: torch.device, batch_size: int = 64,
                          num_workers: int = 0, progress: bool = True, on_bad_image: str = "skip",
                          decode: str = "draft", precision: str = "fp32", check_agreement: bool = True,
                          prepare: bool = True) -> Probabilities:
    """The pass behind `predict_images`, before the table: `paths` are files or in-memory
    RGB PIL images. `prepare=False`: the method was prepared already (`prepare_method`), so
    this call changes nothing shared and may run in several threads at once."""
    if on_bad_image not in ("skip", "fail"):
        raise ClipAdaptError(f"on_bad_image must be 'skip' or 'fail', got '{on_bad_image}'.")
    if decode not in ("draft", "full"):
        raise ClipAdaptError(f"decode must be 'draft' or 'full', got '{decode}'.")
    share_cores()  # a fair share of the CPU's cores, followed batch by batch
    if prepare:
        prepare_method(method, device, precision)
    agreement = None
    transform = make_transform(method.backbone, train=False)
    dataset = PredictionImages(paths, transform, method.backbone.image_size, decode=decode)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    attrs = method.task.attributes
    probs = [np.full((len(paths), a.num_classes), np.nan, dtype=np.float32) for a in attrs]
    ok = np.zeros(len(paths), dtype=bool)
    with progress_bar(progress) as bar, torch.inference_mode():  # outputs go to numpy: no autograd record
        job = bar.add_task("predict", total=len(paths), info="")
        for images, index, good in loader:
            index, good = index.numpy(), good.numpy().astype(bool)
            if on_bad_image == "fail" and not good.all():
                # the reason is re-read here: worker processes keep their own error records
                first = int(index[~good][0])
                raise ClipAdaptError(f"{dataset.error_for(first)} (--on-bad-image skip leaves such images out.)")
            if good.any() and precision != "fp32" and check_agreement and agreement is None:
                agreement = measure_agreement(method, images[good].to(device))
            if good.any():
                for a, found_a in enumerate(batch_probabilities(method, images[good], device)):
                    probs[a][index[good]] = found_a
            ok[index] = good
            bar.advance(job, len(index))
            recheck_share()  # other work may have started or ended beside this job
    errors = ["" if g else dataset.error_for(i) for i, g in enumerate(ok)]
    return Probabilities(probs, ok, errors, agreement)
