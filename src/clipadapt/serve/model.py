"""The model behind `clipadapt serve`: loaded once, answering batches of uploaded images.

Predictions go through `clipadapt.predict.predict_images`, the function behind
`clipadapt predict`, so the service and the command agree to the last digit: the
uploads are written to a private temporary folder and read back by the same loader.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from clipadapt.data.images import load_image
from clipadapt.engine.checkpoint import load_run
from clipadapt.predict import predict_images
from clipadapt.report.embed import image_png_uri
from clipadapt.report.overlays import attention_overlays, has_overlays
from clipadapt.serve.uploads import Upload


class ServedModel:
    """A run folder's method on one device, with what the web page and /api/info show.

    `predict` may run in several threads at once (`--workers`): the method keeps no state
    during a pass (its temperature and microCLIP's LayerNorms are applied per call), and each
    call writes its uploads to a folder of its own (tests/test_serve.py checks that concurrent
    answers equal the answers alone).
    """

    def __init__(self, run_dir: Path, device: torch.device | str = "cpu"):
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.method, self.card = load_run(self.run_dir, device=self.device)
        self.threshold = self.card.threshold

    def info(self) -> dict:
        """What the service predicts: method, backbone, attributes and their classes."""
        task = self.method.task
        backbone = self.card.backbone
        return {
            "method": self.method.name,
            "backbone": {"name": backbone.get("name"), "pretrained": backbone.get("pretrained"),
                         "image_size": self.method.backbone.image_size},
            "multilabel": task.multilabel,
            "threshold": self.threshold if task.multilabel else None,
            "attributes": [{"name": a.name, "classes": list(a.classes)} for a in task.attributes],
            "overlays": has_overlays(self.method),
            "run": self.run_dir.name,
        }

    def predict(self, uploads: Sequence[Upload], overlays: bool = False, threshold: float | None = None) -> list[dict]:
        """One result per upload (already checked to decode): per attribute the predicted
        class and every class probability, or for multi-label runs each attribute's
        probability and decision; with `overlays`, attention overlays as PNG data URIs."""
        cut = self.threshold if threshold is None else threshold
        with tempfile.TemporaryDirectory(prefix="clipadapt-serve-") as tmp:
            paths = []
            for i, upload in enumerate(uploads):
                path = Path(tmp) / f"{i:04d}"  # never the client's name: it may hold '../'
                path.write_bytes(upload.data)
                paths.append(path)
            with torch.inference_mode():
                table = predict_images(self.method, paths, self.device, batch_size=max(len(paths), 1),
                                       progress=False, threshold=cut)
                pictures = self._overlays(paths) if overlays else None
        rows = {row["path"]: row for row in table.to_dict("records")}
        results = []
        for i, (upload, path) in enumerate(zip(uploads, paths)):
            result = self._result(upload.name, rows.get(str(path)), cut)
            if pictures is not None:
                result["overlays"] = {label: image_png_uri(image) for label, image in pictures[i].items()}
            results.append(result)
        return results

    def _overlays(self, paths: list[Path]) -> list[dict[str, Image.Image]] | None:
        if not has_overlays(self.method):
            return None
        return attention_overlays(self.method, [load_image(p) for p in paths])

    def _result(self, name: str, row: dict | None, threshold: float) -> dict:
        """One image's answer from its row of the prediction table."""
        if row is None or not row.get("ok", False):
            reason = (row or {}).get("error") or "the image could not be read"
            return {"name": name, "ok": False, "error": str(reason)}
        attributes = {}
        for attr in self.method.task.attributes:
            if self.method.task.multilabel:
                p = float(row[f"{attr.name}:p"])
                attributes[attr.name] = {"probability": p, "present": bool(row[attr.name] == 1)}
            else:
                probs = {c: float(row[f"{attr.name}:p({c})"]) for c in attr.classes}
                attributes[attr.name] = {"predicted": str(row[attr.name]), "probabilities": probs}
        result = {"name": name, "ok": True, "attributes": attributes}
        if self.method.task.multilabel:
            result["threshold"] = threshold
        return result

