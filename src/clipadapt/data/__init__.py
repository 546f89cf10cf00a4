"""Data: labelled image lists, readers for each source format, splits and transforms."""

from clipadapt.data.dataset import DataSplits, LabelledImages

__all__ = ["DataSplits", "LabelledImages"]
