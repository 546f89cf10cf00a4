"""An exported clipadapt ONNX file: its metadata, its preprocessing and an onnxruntime session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clipadapt.data.pil_transforms import array_transform
from clipadapt.errors import ClipAdaptError
from clipadapt.task import Attribute, TaskSpec

METADATA_KEY = "clipadapt"  # the JSON metadata entry every exported file carries
FORMAT_VERSION = 1
INPUT_NAME = "images"


def _session(path: Path, providers: list[str] | None, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ClipAdaptError("Predicting from an ONNX file needs onnxruntime: pip install 'clipadapt[runtime]' "
                             "(or pip install onnxruntime).") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a damaged or foreign file
        raise ClipAdaptError(f"{path} cannot be loaded by onnxruntime ({type(exc).__name__}: {exc}). "
                             "Export it again with `clipadapt export`.") from None


def read_metadata(session_or_path) -> dict:
    """The clipadapt metadata of an exported file (a path or an onnxruntime session)."""
    session = _session(Path(session_or_path), None, 1) if isinstance(session_or_path, (str, Path)) else session_or_path
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise ClipAdaptError("This ONNX file has no clipadapt metadata (preprocessing, class names); it was not "
                             "written by `clipadapt export`.")
    meta = json.loads(raw)
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ClipAdaptError(f"This ONNX file was written by a newer clipadapt (format {meta['format_version']}); "
                             "upgrade clipadapt to read it.")
    return meta


class OnnxModel:
    """An exported model: `probabilities(images)` for float32 [B, 3, S, S] batches, the
    test transform its metadata describes (`transform`), the task and the decision
    thresholds (`thresholds`, one per attribute; `threshold`, the run's train.threshold)."""

    def __init__(self, path: Path | str, providers: list[str] | None = None, threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ClipAdaptError(f"--model {self.path}: no such file (an .onnx file written by `clipadapt export`).")
        self.session = _session(self.path, providers, threads)
        self.metadata = read_metadata(self.session)
        pre = self.metadata["preprocessing"]
        self.image_size = int(pre["image_size"])
        self.transform = array_transform(pre["kind"], self.image_size, pre["mean"], pre["std"], pre["interpolation"])
        self.multilabel = bool(self.metadata["multilabel"])
        attributes = tuple(Attribute(a["name"], tuple(a["classes"])) for a in self.metadata["attributes"])
        self.task = TaskSpec(attributes, multilabel=self.multilabel)
        self.outputs = [a["output"] for a in self.metadata["attributes"]]
        self.threshold = float(self.metadata.get("threshold", 0.5))
        # files exported before per-attribute thresholds hold only the one threshold
        self.thresholds = [float(t) for t in self.metadata.get("thresholds") or [self.threshold] * len(attributes)]

    def probabilities(self, images: np.ndarray) -> list[np.ndarray]:
        """Per attribute [B, K] class probabilities (multi-label: [1 - p, p]), float32."""
        results = self.session.run(self.outputs, {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})
        if self.multilabel:
            return [np.stack([1.0 - p, p], axis=-1).astype(np.float32) for p in results]
        return [np.asarray(p, dtype=np.float32) for p in results]
