"""A run folder behind `Run`: its method loaded once with torch, prepared for prediction
(eval mode, device, fp32), then only read, so `predict` may run in several threads at once
(tests/test_api_run.py checks 8 threads against one)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from clipadapt.api.run import DEFAULT_BATCH, Run
from clipadapt.errors import ClassTextWarning, ClipAdaptError


class TorchRun(Run):
    """A run folder (train, adapt or import-*) on `device` (None: a GPU when there is one)."""


    def __init__(self, path: Path, device: str | None = None):
        import torch  # noqa: F401 - this back end is torch's

        from clipadapt.engine.checkpoint import load_run
        from clipadapt.engine.devices import resolve_device
        from clipadapt.engine.sources import make_transform
        from clipadapt.methods.text_check import check_class_texts
        from clipadapt.predict.local import prepare_method
        from clipadapt.threads import share_cores

        share_cores()  # a fair share of the cores, as every CPU path of clipadapt
        self.path = Path(path)
        self.device = resolve_device(device or "auto")
        method, self.card = load_run(self.path, device=self.device)
        prepare_method(method, self.device)  # once: predictions only read the module from here on
        self.module = method
        self.task = method.task
        self.threshold = self.card.threshold
        self.thresholds = dict(zip(method.task.names, method.thresholds()))
        self.transform = make_transform(method.backbone, train=False)
        self.warnings = list(self.card.warnings or [])
        for note in check_class_texts(method, stop=False):  # a run that cannot tell classes apart predicts blind
            if note not in self.warnings:
                self.warnings.append(note)
                warnings.warn(note, ClassTextWarning, stacklevel=3)

    def _probabilities(self, items, batch_size, progress, on_bad_image, decode, num_workers):
        from clipadapt.predict.local import predict_probabilities

        found = predict_probabilities(self.module, items, self.device, batch_size=batch_size, num_workers=num_workers,
                                      progress=progress, on_bad_image=on_bad_image, decode=decode, prepare=False)
        return found.probs, found.ok, found.errors

    def embed(self, images, batch_size: int | None = None, normalise: bool = True) -> np.ndarray:
        import torch
        from torch.utils.data import DataLoader

        from clipadapt.predict.decode import PredictionImages

        items = self._items(images)
        dataset = PredictionImages(items, self.transform, self.module.backbone.image_size, on_error="raise")
        rows = []
        with torch.inference_mode():
            for batch, _, _ in DataLoader(dataset, batch_size=batch_size or DEFAULT_BATCH):
                embedding = self.module.backbone.forward_features(batch.to(self.device)).embedding.float()
                rows.append(torch.nn.functional.normalize(embedding, dim=-1) if normalise else embedding)
        return torch.cat(rows).cpu().numpy()

    def export(self, path: str | os.PathLike, int8: bool = False) -> Path:
        from clipadapt.export import export_run

        out = Path(path).expanduser()
        if out.suffix.lower() != ".onnx":
            raise ClipAdaptError(f"export({str(path)!r}): use an .onnx file name.")
        export_run(self.path, out, int8=int8)
        return out
