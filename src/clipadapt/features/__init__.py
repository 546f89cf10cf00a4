"""Content-keyed on-disk store of frozen backbone features (tap tokens fp16, embeddings fp32).

Memory-mapped, resumable, shared by every run that would compute the same features.
"""

from clipadapt.data.fingerprint import image_list_fingerprint
from clipadapt.features.extract import extract
from clipadapt.features.keys import feature_key
from clipadapt.features.store import (
    FeatureSet,
    FeatureStore,
    StoreEntry,
    default_root,
    describe_per_image_bytes,
)
from clipadapt.features.views import SeededViewTransform, ViewSampler, seeded_view_transform

__all__ = [
    "FeatureSet", "FeatureStore", "SeededViewTransform", "StoreEntry", "ViewSampler", "default_root",
    "describe_per_image_bytes", "extract", "feature_key", "image_list_fingerprint", "seeded_view_transform",
]
