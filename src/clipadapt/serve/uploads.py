"""Uploaded images: recognise them by their first bytes and decode them with bounds, so
every bad upload becomes one clear HTTP error, and decode them for the model as
`clipadapt predict` decodes a file (body.py takes the files out of the request).

The Content-Type a client declares is not trusted (browsers send
application/octet-stream for unknown extensions, scripts send anything): the first
bytes decide whether a file is an image we can read.
"""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from PIL import Image, UnidentifiedImageError

from clipadapt.data.images import MAX_ASPECT_RATIO, to_rgb, upright
from clipadapt.predict.draft import open_at_size

# (format name, test on the first bytes). Only formats Pillow decodes out of the box.
SIGNATURES: tuple[tuple[str, object], ...] = (
    ("JPEG", lambda b: b.startswith(b"\xff\xd8\xff")),
    ("PNG", lambda b: b.startswith(b"\x89PNG\r\n\x1a\n")),
    ("GIF", lambda b: b[:6] in (b"GIF87a", b"GIF89a")),
    ("WEBP", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"),
    ("BMP", lambda b: b.startswith(b"BM")),
    ("TIFF", lambda b: b[:4] in (b"II*\x00", b"MM\x00*")),
)
# What a non-image most often is, so the error can say so.
LOOKALIKES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (or Office document)"),
    (b"\x1f\x8b", "a gzip archive"), (b"<", "HTML or XML text"), (b"{", "JSON text"),
    (b"\x00\x00\x00", "a video or other binary file"),
)
SUPPORTED = ", ".join(name for name, _ in SIGNATURES)


class UploadError(Exception):
    """A request the service refuses: `status` is the HTTP status, the message says
    what was wrong and how to fix it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its name (as the client gave it, or 'upload') and bytes."""

    name: str
    data: bytes


EMPTY_BODY = ("Empty request body: send an image as the body, or as multipart/form-data files (field name "
              "'image'), e.g. curl --data-binary @photo.jpg URL or curl -F image=@photo.jpg URL.")


def sniff(data: bytes) -> str | None:
    """The image format the first bytes announce (JPEG, PNG, ...), or None."""
    head = data[:16]
    return next((name for name, test in SIGNATURES if test(head)), None)


def describe_non_image(data: bytes) -> str:
    """A guess at what a non-image upload is, for the error message."""
    if not data:
        return "empty"
    stripped = data.lstrip()[:8]
    for prefix, what in LOOKALIKES:
        if stripped.startswith(prefix):
            return what
    try:
        data[:256].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "binary data of an unknown kind"


def check_upload(upload: Upload, max_pixels: int) -> str:
    """The upload's image format, once its first bytes and its header's size pass: the
    checks that need no decoding.

    Raises:
        UploadError: not an image (415), more than `max_pixels` pixels (413), or a header
            that does not parse (400). Messages name the file.
    """
    kind = sniff(upload.data)
    if kind is None:
        raise UploadError(415, f"'{upload.name}' is not an image (it looks like {describe_non_image(upload.data)}); "
                               f"send one of: {SUPPORTED}.")
    with _opened(upload, kind) as image:
        width, height = image.size
    if width * height > max_pixels:
        raise UploadError(413, f"'{upload.name}' is {width}x{height} pixels, more than the "
                               f"{max_pixels:,} allowed; resize it before sending.")
    return kind


def decode(upload: Upload, max_pixels: int) -> Image.Image:
    """Decode an upload to an upright 8-bit RGB image (EXIF orientation applied, transparency
    on white: as `clipadapt predict` reads a file), checking its kind and its size first.

    Raises:
        UploadError: not an image (415), more than `max_pixels` pixels (413), or an image
            that does not decode (truncated, corrupt: 400). Messages name the file.
    """
    kind = check_upload(upload, max_pixels)
    with _opened(upload, kind) as image:
        image.load()  # decode now: a truncated file fails here, with its name
        return to_rgb(upright(image))


@contextmanager
def _opened(upload: Upload, kind: str) -> Iterator[Image.Image]:
    """The upload opened by Pillow; any decoder failure inside is a 400 naming the file."""
    try:
        with warnings.catch_warnings():
            # check_upload's pixel bound replaces Pillow's DecompressionBombWarning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data)) as image:
                yield image
    except UploadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UploadError(400, f"'{upload.name}' starts like a {kind} image but cannot be decoded ({exc}); "
                               "the file is truncated or corrupt.") from None


@dataclass
class Decoded:
    """One upload ready for the model: `image` as the model gets it (None when the image is
    refused, `error` saying why), and `full`, the whole image decoded (for overlays; None
    when the model's image is a reduced-scale JPEG decode and no full one was needed)."""

    name: str
    image: Image.Image | None
    error: str | None = None
    full: Image.Image | None = None


def decode_for_model(upload: Upload, max_pixels: int, size: int, full: bool = False) -> Decoded:
    """An upload decoded as `clipadapt predict` decodes a file: a large JPEG at reduced scale
    (`open_at_size`, the draft decode), anything else in full through `decode`; an image
    that decodes but that predict's loader refuses (a strip: sides differ more than
    MAX_ASPECT_RATIO x) comes back with `error` set, as predict's row does. `full`: also
    keep the whole image decoded (overlays are drawn on it).

    Raises:
        UploadError: as `decode` (415 / 413 / 400), so a bad file refuses the request.
    """
    check_upload(upload, max_pixels)  # the cheap refusals first, as for a full decode
    drafted = open_at_size(io.BytesIO(upload.data), size)
    if drafted is not None:
        return Decoded(upload.name, drafted, full=decode(upload, max_pixels) if full else None)
    image = decode(upload, max_pixels)
    width, height = image.size
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return Decoded(upload.name, None, f"'{upload.name}' is {width} x {height} pixels, a strip, not a photo "
                                          f"(sides differ more than {MAX_ASPECT_RATIO}x); crop it.")
    return Decoded(upload.name, image, full=image)
