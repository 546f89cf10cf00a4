"""The model behind `clipadapt serve`: a run loaded and prepared once, turning decoded images
into tensors, batches of tensors into probabilities, and probabilities into answers.

The forward pass is `clipadapt.predict.local.batch_probabilities`, the one `clipadapt
predict` runs, and the answers are built from the same prediction columns as predict's
table, so the service and the command agree (to float32 rounding: see batching.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from clipadapt.engine.checkpoint import load_run
from clipadapt.engine.sources import make_transform
from clipadapt.predict.columns import per_attribute, prediction_columns
from clipadapt.predict.local import batch_probabilities, prepare_method
from clipadapt.report.embed import image_png_uri
from clipadapt.report.overlays import attention_overlays, has_overlays
from clipadapt.threads import share_cores


class ServedModel:
    """A run folder's method on one device, with what the web page and /api/info show.

    The method is prepared once here (eval mode, device, fp32) and never changed while
    serving: it keeps no state during a pass (a calibrated run's temperatures and
    microCLIP's LayerNorms are applied per call), so several forwards may run at once.
    """

    def __init__(self, run_dir: Path, device: torch.device | str = "cpu"):
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        share_cores()  # a fair share of the CPU's cores, as `clipadapt predict` takes
        self.method, self.card = load_run(self.run_dir, device=self.device)
        prepare_method(self.method, self.device)
        self.thresholds = self.method.thresholds()  # the run's, one per attribute
        self.transform = make_transform(self.method.backbone, train=False)
        self.overlays_available = has_overlays(self.method)

    @property
    def image_size(self) -> int:
        """The side of the square the model sees, in pixels."""
        return self.method.backbone.image_size

    @property
    def multilabel(self) -> bool:
        return self.method.task.multilabel

    def info(self) -> dict:
        """What the service predicts: method, backbone, attributes and their classes."""
        backbone = self.card.backbone
        return {
            "method": self.method.name,
            "backbone": {"name": backbone.get("name"), "pretrained": backbone.get("pretrained"),
                         "image_size": self.image_size},
            "multilabel": self.multilabel,
            # one number when every attribute shares it (None otherwise); every one under thresholds
            "threshold": (self.thresholds[0] if len(set(self.thresholds)) == 1 else None) if self.multilabel else None,
            "thresholds": dict(zip(self.method.task.names, self.thresholds)) if self.multilabel else None,
            "attributes": [{"name": a.name, "classes": list(a.classes)} for a in self.method.task.attributes],
            "overlays": self.overlays_available,
            "run": self.run_dir.name,
        }

    def tensor(self, image: Image.Image) -> torch.Tensor:
        """One decoded RGB image as the model's input [3, H, W] (the test-time transform)."""
        return self.transform(image)

    def blank(self) -> torch.Tensor:
        """An all-zero input, the padding row of a batch and the warm-up image."""
        size = self.image_size
        return torch.zeros(3, size, size)

    def probabilities(self, batch: torch.Tensor) -> list[np.ndarray]:
        """Per attribute the [B, K] class probabilities of a batch [B, 3, H, W]."""
        return batch_probabilities(self.method, batch, self.device)

    def answers(self, names: Sequence[str], probs: Sequence[list[np.ndarray] | None], errors: Sequence[str | None],
                threshold: float | None = None) -> list[dict]:
        """One answer per image: per attribute the predicted class and every class probability,
        or for multi-label runs each attribute's probability and its decision at `threshold`
        (one for every attribute; None: the run's own, one per attribute). `probs[i]` is image i's per-attribute probabilities, or
        None for an image refused with `errors[i]`."""
        cut = self.thresholds if threshold is None else threshold
        cuts = per_attribute(cut, len(self.method.task))
        task = self.method.task
        ok = np.array([p is not None for p in probs], dtype=bool)
        stacked = [np.stack([p[a] if p is not None else np.full(attr.num_classes, np.nan, dtype=np.float32)
                             for p in probs]) for a, attr in enumerate(task.attributes)]
        columns = prediction_columns(task, stacked, cuts, ok)  # the columns of predict's table
        answers = []
        for i, name in enumerate(names):
            if not ok[i]:
                answers.append({"name": name, "ok": False, "error": str(errors[i] or "the image could not be read")})
                continue
            attributes = {}
            for a, attr in enumerate(task.attributes):
                if task.multilabel:
                    attributes[attr.name] = {"probability": float(columns[f"{attr.name}:p"][i]),
                                             "present": bool(columns[attr.name][i] == 1),
                                             "threshold": cuts[a]}
                else:
                    attributes[attr.name] = {"predicted": str(columns[attr.name][i]),
                                             "probabilities": {c: float(columns[f"{attr.name}:p({c})"][i])
                                                               for c in attr.classes}}
            answer = {"name": name, "ok": True, "attributes": attributes}
            if task.multilabel and len(set(cuts)) == 1:  # a shared threshold, as before per-attribute ones
                answer["threshold"] = cuts[0]
            answers.append(answer)
        return answers

    def overlays(self, images: Sequence[Image.Image]) -> list[dict[str, str]]:
        """Per image, {label: PNG data URI} of the method's attention overlays (call it only
        when `overlays_available`)."""
        with torch.inference_mode():
            pictures = attention_overlays(self.method, list(images))
        return [{label: image_png_uri(picture) for label, picture in per_image.items()} for per_image in pictures]
