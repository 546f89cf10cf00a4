"""Prediction at scale: images in, one row per image out (CSV or Parquet)."""

from clipadapt.predict.local import predict_images, write_table

__all__ = ["predict_images", "write_table"]
