"""The bad-image policy: `fail` (stop at the first unusable image, naming it) or `skip`
(leave unusable images out, list each with its reason, and say how many).

Training defaults to `fail` (a silently smaller training set changes results);
`predict` and `extract` default to `skip` (one broken file in a million should not stop
the job).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.data.dataset import LabelledImages
from clipadapt.data.fingerprint import image_list_fingerprint
from clipadapt.data.images import BadImage, load_image
from clipadapt.io import atomic_write
from clipadapt.run_files import RunFiles

LOG = logging.getLogger("clipadapt")

SKIPPED_FILE = RunFiles.SKIPPED  # also the suffix of predict's list beside its table


@dataclass(frozen=True)
class SkippedImage:
    """One image left out: its path, why, and where it was listed (split / manifest line)."""

    path: str
    reason: str
    where: str = ""


def check_image(path: Path | str, where: str | None = None) -> str:
    """'' when the image decodes, else the short reason it cannot be used."""
    try:
        load_image(path, where)
    except BadImage as exc:
        return exc.reason
    return ""


def find_bad_images(paths: list[Path], sources: list[str] | None = None, workers: int | None = None) -> dict[int, str]:
    """Row -> reason for every image of `paths` that cannot be used (decodes each once).

    Decoding releases the GIL in Pillow, so threads overlap it across cores. Results are
    remembered per image list (paths, sizes, times) within the process, so the several
    runs of one command (seeds, the demo's methods, extract's summary) decode it once.
    """
    key = image_list_fingerprint(paths)["sha256"]
    if key not in _SCANS:
        sources = sources or [None] * len(paths)
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(check_image, paths, sources))
        while len(_SCANS) >= _SCANS_KEPT:
            _SCANS.pop(next(iter(_SCANS)))
        _SCANS[key] = {i: r for i, r in enumerate(reasons) if r}
    return dict(_SCANS[key])


_SCANS: dict[str, dict[int, str]] = {}
_SCANS_KEPT = 16


def drop_bad_images(images: LabelledImages, split: str) -> tuple[LabelledImages, list[SkippedImage]]:
    """`images` without the rows whose image cannot be used, and those rows as SkippedImages."""
    bad = find_bad_images(images.paths, images.sources)
    if not bad:
        return images, []
    skipped = [SkippedImage(str(images.paths[i]), reason, f"{split}: {images.sources[i]}" if images.sources else split)
               for i, reason in sorted(bad.items())]
    keep = np.setdiff1d(np.arange(len(images)), np.fromiter(bad, dtype=np.int64))
    announce_skipped(skipped, total=len(images), what=f"{split} images")
    return images.subset(keep), skipped


def announce_skipped(skipped: list[SkippedImage], total: int, what: str = "images", listed_in: Path | None = None) -> None:
    """One warning line: how many were skipped, the first one and why, where the list is."""
    if not skipped:
        return
    first = skipped[0]
    where = f"; all listed in {listed_in}" if listed_in else ""
    LOG.warning("skipped %d of %d %s that cannot be used (first: %s: %s)%s",
                len(skipped), total, what, first.path, first.reason, where)


def write_skipped(path: Path, skipped: list[SkippedImage]) -> Path:
    """The skip list as CSV (path, reason, where), atomically; written even when empty,
    so 'no file' never has to be read as 'nothing skipped'."""
    table = pd.DataFrame([(s.path, s.reason, s.where) for s in skipped], columns=["path", "reason", "where"])
    atomic_write(Path(path), lambda p: table.to_csv(p, index=False))
    return Path(path)


def record_skipped(folder: Path, skipped: list[SkippedImage]) -> Path:
    """Write FOLDER/skipped_images.csv and say where it is when anything was skipped."""
    path = write_skipped(Path(folder) / SKIPPED_FILE, skipped)
    if skipped:
        LOG.warning("%d unusable image(s) were left out; each is listed with its reason in %s", len(skipped), path)
    return path
