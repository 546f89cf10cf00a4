"""A trained run as one ONNX file: images in, every attribute's probabilities out.

The graph: `images` float32 [B, 3, S, S] (already preprocessed; B dynamic) -> one output
per attribute, named after it: [B, K] class probabilities, or [B] the probability that
a multi-label attribute is present. The text side (class prompts, CoOp's learned
context, PromptPAR's text prompts) is computed once here and folded into constant
weights, so the file needs no tokenizer. Its metadata (key "clipadapt", JSON) holds
the preprocessing, the class names, the decision threshold, the method and the run's
identity; `clipadapt.runtime` reads it without torch. A calibrated run's temperatures (logits / T,
per attribute) are inside the graph, applied by the method itself (`Method.apply_temperature`).

Exported with torch.onnx's dynamo exporter (torch.export): the TorchScript one fixes the
batch size inside PromptPAR's prompt injection. On CPU without autograd some layers run
as fused oneDNN ops that ONNX does not know; they are switched to their portable twins
while the graph is traced (`fast.portable_ops()`; same numbers: tests/test_backbone_fast.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import clipadapt
from clipadapt.backbone import ImageFeatures
from clipadapt.backbone import fast
from clipadapt.engine.card import as_card
from clipadapt.engine.checkpoint import CHECKPOINT, load_run
from clipadapt.io import atomic_write
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import Method
from clipadapt.predict.agreement import Agreement
from clipadapt.runtime.model import FORMAT_VERSION, INPUT_NAME, METADATA_KEY

OPSET = 18


def refusal(method: Method) -> str | None:
    """Why `method` cannot be exported faithfully, in one line; None when it can (the
    method's own reason first: `Method.export_refusal`)."""
    why = method.export_refusal()
    if why is not None:
        return why
    if getattr(method.backbone, "precision", "fp32") != "fp32":
        return "the backbone is set to a lossy precision; export the fp32 model (--int8 quantises the file)."
    return None


class ProbabilityGraph(nn.Module):
    """`method` as images -> per-attribute probabilities (what the ONNX file computes)."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method
        self.multilabel = method.task.multilabel

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.method.reads_images:  # e.g. majority's prior: no image pass, only the batch size
            logits = self.method(ImageFeatures(None, images.new_zeros(images.shape[0], 1)))
        else:
            logits = self.method.forward_images(images)
        probs = [torch.softmax(z.float(), dim=-1) for z in logits]
        return tuple(p[:, 1] for p in probs) if self.multilabel else tuple(probs)


@contextmanager
def traceable(method: Method):
    """The method frozen by its own hook (`Method.frozen_for_export`: CoOp's and PromptPAR's
    text side as constants), run with the portable (ONNX-known) linear ops in this thread."""
    with method.frozen_for_export(), fast.portable_ops():
        yield method


def output_names(method: Method) -> list[str]:
    names = list(method.task.names)
    if INPUT_NAME in names:
        raise ClipAdaptError(f"An attribute is named '{INPUT_NAME}', the name of the ONNX file's input; rename the "
                             "attribute (its label column) and train again.")
    return names


def export_graph(method: Method, path: Path) -> None:
    """Trace `method` and write the fp32 ONNX graph to `path` (no metadata yet)."""
    bb = method.backbone
    example = torch.zeros(2, 3, bb.image_size, bb.image_size)
    method.eval()
    # logit_scale is read as a Python float, and torch.export prints a page-long graph dump
    # about that data-dependent value (a constant of the file either way): kept off the terminal
    chatter = io.StringIO()
    optimiser_log = logging.getLogger("onnxscript")  # notes on constant folding it skipped (timm towers)
    saved_level = optimiser_log.level
    optimiser_log.setLevel(logging.ERROR)
    with (traceable(method), torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(chatter),
          contextlib.redirect_stderr(chatter)):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(ProbabilityGraph(method), (example,), str(path), dynamo=True, external_data=False,
                              input_names=[INPUT_NAME], output_names=output_names(method), opset_version=OPSET,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        except ClipAdaptError:
            raise
        except Exception as exc:  # the exporter's own error types; the first line says what failed
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClipAdaptError(f"method '{method.name}' could not be exported to ONNX ({first}).") from None
        finally:
            optimiser_log.setLevel(saved_level)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_metadata(method: Method, card: dict, run_dir: Path) -> dict:
    """What the runtime needs (preprocessing, classes, thresholds) and what identifies the run."""
    bb, card = method.backbone, as_card(card)
    threshold = card.threshold
    return {
        "format_version": FORMAT_VERSION,
        "method": method.name,
        "multilabel": method.task.multilabel,
        "threshold": float(threshold),  # train.threshold; a file without "thresholds" decides with it
        "thresholds": method.thresholds(),  # the decision threshold of each attribute, in attribute order
        "attributes": [{"name": a.name, "classes": list(a.classes), "output": a.name,
                        "output_shape": ["batch"] if method.task.multilabel else ["batch", a.num_classes]}
                       for a in method.task.attributes],
        "preprocessing": {"kind": bb.transform_kind(False), "image_size": int(bb.image_size),
                          "interpolation": bb.interpolation, "mean": [float(m) for m in bb.image_mean],
                          "std": [float(s) for s in bb.image_std],
                          "steps": card.preprocessing.get("test", "")},
        "run": {"folder": str(Path(run_dir).resolve()), "checkpoint_sha256": file_sha256(Path(run_dir) / CHECKPOINT),
                "method": card.method, "params": card.params, "backbone": card.backbone,
                "seed": card.seed, "metrics": card.metrics, "versions": card.versions},
        # the temperatures and Platt biases are inside the graph (Method.apply_temperature); this says they are
        "calibration": card.calibration,
        "precision": "fp32",
        "exported_by": {"clipadapt": clipadapt.__version__, "torch": torch.__version__, "opset": OPSET},
    }


def write_metadata(source: Path, out: Path, metadata: dict) -> None:
    """Copy the ONNX file `source` to `out` (atomically) with `metadata` under the "clipadapt" key."""
    import onnx

    model = onnx.load(str(source))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    model.doc_string = (f"clipadapt {metadata['method']}: images [B, 3, {metadata['preprocessing']['image_size']}, "
                        f"{metadata['preprocessing']['image_size']}] -> per-attribute probabilities; "
                        f"metadata key '{METADATA_KEY}' (docs/export.md)")
    atomic_write(out, lambda p: onnx.save(model, str(p)))


@dataclass
class OnnxAgreement(Agreement):
    """An int8 file against its fp32 source: as `predict --precision`'s Agreement, with the
    cosine taken between the probability vectors (the file outputs nothing else) and the
    largest probability difference."""

    max_abs_diff: float = 0.0

    def describe(self) -> str:
        return (f"int8 measured against fp32 on the first {self.images} image(s): same prediction "
                f"{100 * self.same_prediction:.1f}%, probability cosine mean {self.cosine_mean:.5f} "
                f"(worst {self.cosine_min:.5f}), largest probability difference {self.max_abs_diff:.4f}")


def measure_agreement(exact, lossy, images: np.ndarray) -> OnnxAgreement:
    """`exact` and `lossy` (runtime.OnnxModel) on the float32 batch `images`."""
    a, b = exact.probabilities(images), lossy.probabilities(images)
    same = np.concatenate([(x.argmax(-1) == y.argmax(-1)) if not exact.multilabel
                           else ((x[:, 1] > cut) == (y[:, 1] > cut))
                           for x, y, cut in zip(a, b, exact.thresholds)])
    x, y = np.concatenate(a, axis=1).astype(np.float64), np.concatenate(b, axis=1).astype(np.float64)
    cos = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12)
    return OnnxAgreement("int8", len(images), float(cos.mean()), float(cos.min()), float(same.mean()),
                         float(np.abs(x - y).max()))


def first_batch(model, paths: list[Path], batch_size: int) -> np.ndarray | None:
    """The first `batch_size` usable images of `paths`, preprocessed as the file says."""
    from clipadapt.runtime.predict import decode_image

    arrays = []
    for path in paths:
        array, _ = decode_image(model, Path(path), "draft")
        if array is not None:
            arrays.append(array)
        if len(arrays) == batch_size:
            break
    return np.stack(arrays) if arrays else None


def quantise(source: Path, out: Path) -> None:
    """int8 dynamic quantisation (weights int8, activations quantised per batch) of `source`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8)


@dataclass
class ExportResult:
    path: Path
    size_bytes: int
    metadata: dict
    agreement: OnnxAgreement | None = None
    notes: list[str] = field(default_factory=list)


def export_method(method: Method, card: dict, run_dir: Path, out: Path, int8: bool = False,
                  check_images: list[Path] | None = None, batch_size: int = 32) -> ExportResult:
    """Write `method` (loaded from `run_dir`, whose card is `card`) to the ONNX file `out`;
    int8: quantised, with its agreement with fp32 measured on the first batch of `check_images`."""
    from clipadapt.runtime.model import OnnxModel

    why = refusal(method)
    if why:
        raise ClipAdaptError(why)
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ClipAdaptError(f"ONNX export needs {', '.join(missing)}: pip install 'clipadapt[export]'.")
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ClipAdaptError(f"--out {out}: use an .onnx file name.")
    metadata = build_metadata(method, card, run_dir)
    notes = []
    with tempfile.TemporaryDirectory(prefix="clipadapt-export-") as tmp:
        graph, fp32 = Path(tmp) / "graph.onnx", Path(tmp) / "fp32.onnx"
        export_graph(method, graph)
        if not int8:
            write_metadata(graph, out, metadata)
            return ExportResult(out, out.stat().st_size, metadata)
        write_metadata(graph, fp32, metadata)
        quantised = Path(tmp) / "int8.onnx"
        quantise(fp32, quantised)
        exact = OnnxModel(fp32)
        batch = first_batch(exact, check_images or [], batch_size)
        agreement = None
        if batch is None:
            notes.append("int8 agreement with fp32 not measured: no usable images (pass --images, or keep the run's "
                         "test images where its config says).")
        else:
            write_metadata(quantised, quantised, metadata)  # the runtime reads the threshold from it
            agreement = measure_agreement(exact, OnnxModel(quantised), batch)
        metadata = {**metadata, "precision": "int8", "int8_agreement": agreement.__dict__ if agreement else None}
        write_metadata(quantised, out, metadata)
    return ExportResult(out, out.stat().st_size, metadata, agreement, notes)


def run_test_images(card: dict) -> list[Path]:
    """The test images of the run's own data (its config), or [] when they cannot be read here."""
    try:
        from clipadapt.config import RunConfig
        from clipadapt.data.formats import build_splits

        splits = build_splits(RunConfig.model_validate(as_card(card).config).data)
        return list(splits.test.paths) if splits.test is not None else []
    except Exception:  # data moved, another machine, no config: the caller says it was not measured
        return []


def export_run(run_dir: Path, out: Path, int8: bool = False, images: list[Path] | None = None,
               batch_size: int = 32) -> ExportResult:
    """`clipadapt export RUN_DIR --format onnx --out OUT [--int8]`: load the run, export it."""
    method, card = load_run(run_dir, device="cpu")
    if int8 and not images:
        images = run_test_images(card)
    return export_method(method, card, run_dir, out, int8=int8, check_images=images, batch_size=batch_size)
