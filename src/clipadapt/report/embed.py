"""Images as data URIs, so a report is one file that opens offline and can be mailed."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
THUMBNAIL_QUALITY = 85  # JPEG quality of photo thumbnails: ~5x smaller than PNG, no visible loss


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_uri(data: bytes) -> str:
    """A data URI of PNG bytes (figures: lossless, sharp text)."""
    return data_uri(data, "image/png")


def image_png_uri(image: Image.Image) -> str:
    """A data URI of a PIL image as PNG (overlays: lossless colours of the heat map)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return png_uri(buffer.getvalue())


def png_file_uri(path: Path) -> str | None:
    """A data URI of a PNG file, or None when it is missing or not a PNG."""
    path = Path(path)
    if not path.is_file():
        return None
    data = path.read_bytes()
    return png_uri(data) if data.startswith(PNG_SIGNATURE) else None


def photo_uri(image: Image.Image) -> str:
    """A data URI of a photo thumbnail (JPEG: photographs compress far better than PNG,
    which matters when a gallery embeds dozens of them)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return data_uri(buffer.getvalue(), "image/jpeg")
