"""An exported ONNX file behind `Run`: onnxruntime on the CPU, no torch. Its card is made
from the file's metadata (method, backbone, classes, preprocessing, threshold, metrics)."""

from __future__ import annotations

from pathlib import Path

from clipadapt.api.run import Run
from clipadapt.engine.card import RunCard


class OnnxRun(Run):
    """A file written by `clipadapt export` (or `Run.export`)."""

    module = None

    def __init__(self, path: Path):
        from clipadapt.runtime.model import OnnxModel

        self.path = Path(path)
        self.model = OnnxModel(self.path)
        meta = self.model.metadata
        run = meta.get("run") or {}
        self.task = self.model.task
        self.threshold = self.model.threshold
        self.thresholds = dict(zip(self.task.names, self.model.thresholds))
        self.transform = self.model.transform
        self.card = RunCard(method=meta["method"], backbone=dict(run.get("backbone") or {}), task=self.task.to_dict(),
                            params=dict(run.get("params") or {}),
                            preprocessing={"test": meta["preprocessing"].get("steps", "")},
                            versions=run.get("versions"), seed=run.get("seed"),
                            config={"train": {"threshold": self.threshold}}, metrics=run.get("metrics"),
                            calibration=meta.get("calibration"),
                            extra={"exported": {"precision": meta.get("precision"), "from": run.get("folder"),
                                                "exported_by": meta.get("exported_by")}})
        self.warnings = []

    def _probabilities(self, items, batch_size, progress, on_bad_image, decode, num_workers):
        from clipadapt.runtime.predict import onnx_probabilities

        return onnx_probabilities(self.model, items, batch_size, on_bad_image, decode, num_workers)
