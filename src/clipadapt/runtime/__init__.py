"""Prediction from an exported ONNX file with onnxruntime, without torch.

`clipadapt export RUN_DIR --format onnx --out model.onnx` writes the file (docs/export.md);
this package reads it: the preprocessing, class names and decision threshold travel in
the file's metadata, images are decoded exactly as `clipadapt predict --checkpoint`
decodes them, and the table has the same columns. It imports numpy, Pillow, onnxruntime
and pandas, never torch:

    python -m clipadapt.runtime IMAGES --model model.onnx --out preds.csv
"""

from clipadapt.runtime.model import OnnxModel, read_metadata
from clipadapt.runtime.predict import predict_onnx

__all__ = ["OnnxModel", "predict_onnx", "read_metadata"]
