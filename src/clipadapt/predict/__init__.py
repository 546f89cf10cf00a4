"""Prediction at scale: images in, one row per image out (CSV or Parquet)."""

__all__ = ["predict_images", "write_table"]


def __getattr__(name: str):
    # loaded on first use: the torch-free ONNX runtime (clipadapt.runtime) imports this
    # package's decoding, column and table modules without torch
    if name == "predict_images":
        from clipadapt.predict.local import predict_images

        return predict_images
    if name == "write_table":
        from clipadapt.predict.tables import write_table

        return write_table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
