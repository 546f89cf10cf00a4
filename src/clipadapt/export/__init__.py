"""Shipping a trained run: `clipadapt export` (ONNX, optionally int8); docs/export.md."""

from clipadapt.export.onnx import ExportResult, export_method, export_run, refusal

__all__ = ["ExportResult", "export_method", "export_run", "refusal"]
