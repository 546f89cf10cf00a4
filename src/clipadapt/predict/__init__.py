"""Prediction at scale: images in, one row per image out (CSV or Parquet)."""

__all__ = ["predict_images", "write_table"]


def __getattr__(name: str):
    # loaded on first use: the torch-free ONNX runtime (clipadapt.runtime) imports this
    # package's decoding and column modules without torch
    if name in __all__:
        from clipadapt.predict import local

        return getattr(local, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
