"""After `clipadapt extract --on-bad-image skip`: the images left out, listed in the store
entries they were left out of (the extraction's output folders)."""

from __future__ import annotations

from pathlib import Path

from clipadapt.config import RunConfig
from clipadapt.data.bad_images import SKIPPED_FILE, SkippedImage, write_skipped
from clipadapt.features.store import FeatureStore


def record_skipped_in_entries(cfg: RunConfig, entries: dict[str, dict]) -> tuple[list[SkippedImage], list[Path]]:
    """Write ENTRY/skipped_images.csv into every entry of `entries` ({split: {"key": ...}},
    as `extract_run` returns them); returns the skipped images and the files written.

    The data set is read again to learn what was left out; the image scan is remembered
    from the extraction, so no image is decoded twice.
    """
    from clipadapt.data.formats import build_splits

    skipped = build_splits(cfg.data).skipped
    store = FeatureStore.from_config(cfg.features)
    written = [write_skipped(store.path(entry["key"]) / SKIPPED_FILE, skipped) for entry in entries.values()]
    return skipped, written
