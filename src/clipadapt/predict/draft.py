"""JPEGs decoded at about the size the model needs, not at full size.

A 2048 x 1024 street view shrinks to 224 px anyway; libjpeg can decode it at 1/2, 1/4
or 1/8 scale straight from the DCT coefficients (Pillow's draft mode) for a fraction
of the work. The scale chosen keeps both sides >= DRAFT_MARGIN x the model's input
size, so the bicubic resize that follows still does the last halving itself: scaling
in the DCT alone (straight to the input size) is a cruder filter and moved a
probability by up to 0.04. An image whose short side is under 2 x DRAFT_MARGIN x the
input size (a 128 px JPEG for a 64 px model) gains nothing and is decoded in full, so
it gives exactly what `--decode full` and `explain` give. Larger ones differ
slightly from a full decode (docs/cli.md; benchmarks/run_all.py prints the agreement).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from clipadapt.data import images as image_files


DRAFT_MARGIN = 2  # decode to at least this many times the model's input size


def open_at_size(path: Path | str, size: int) -> Image.Image | None:
    """An RGB JPEG decoded at reduced scale with both sides >= DRAFT_MARGIN x `size` (EXIF
    orientation applied), or None when draft decoding does not apply (not a JPEG, short
    side under 2 x DRAFT_MARGIN x `size`, over the pixel limit) or fails: the caller then
    takes the full, checked path, which reports a bad file with its message."""
    limit = getattr(image_files, "MAX_PIXELS", Image.MAX_IMAGE_PIXELS)
    keep = DRAFT_MARGIN * size
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.format != "JPEG" or min(width, height) < 2 * keep or width * height > limit:
                return None
            img.draft("RGB", (keep, keep))
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except Exception:  # any failure: the checked loader decides and explains
        return None
