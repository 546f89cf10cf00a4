"""Uploaded images: split a request body into files, recognise images by their first
bytes, and decode them with bounds, so every bad upload becomes one clear HTTP error.

The Content-Type a client declares is not trusted (browsers send
application/octet-stream for unknown extensions, scripts send anything): the first
bytes decide whether a file is an image we can read.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

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


def split_body(body: bytes, content_type: str, max_files: int) -> list[Upload]:
    """The files of a request body.

    multipart/form-data: every part that carries a file name, or any part when none
    does (curl -F 'image=@x.jpg' names it; a hand-made form may not). Anything else:
    the raw body is one image (name from the `name` query argument, set by the caller).

    Raises:
        UploadError: an empty body (400), a multipart body without files (400), or more
            than `max_files` files (413).
    """
    if not body:
        raise UploadError(400, EMPTY_BODY)
    if not content_type.lower().startswith("multipart/form-data"):
        return [Upload("upload", body)]
    if "boundary=" not in content_type:
        raise UploadError(400, "multipart/form-data without a boundary: let your HTTP client build the form "
                               "(e.g. curl -F image=@photo.jpg).")
    # The email package parses MIME multipart bodies (the cgi module is gone in 3.13).
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise UploadError(400, "The multipart/form-data body could not be parsed; check the boundary.")
    parts = [p for p in message.iter_parts() if p.get_content_disposition() == "form-data"]
    with_names = [p for p in parts if p.get_filename()]
    chosen = with_names or parts
    if not chosen:
        raise UploadError(400, "The form holds no files: add the image(s) as file fields (field name 'image').")
    if len(chosen) > max_files:
        raise UploadError(413, f"{len(chosen)} images in one request; at most {max_files} are allowed "
                               "(--max-batch). Split the batch into smaller requests.")
    return [Upload(p.get_filename() or p.get_param("name", header="content-disposition") or f"image{i}",
                   p.get_payload(decode=True) or b"") for i, p in enumerate(chosen)]


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


def decode(upload: Upload, max_pixels: int) -> Image.Image:
    """Decode an upload to an RGB image, checking its kind and its size first.

    Raises:
        UploadError: not an image (415), more than `max_pixels` pixels (413), or an image
            that does not decode (truncated, corrupt: 400). Messages name the file.
    """
    kind = sniff(upload.data)
    if kind is None:
        raise UploadError(415, f"'{upload.name}' is not an image (it looks like {describe_non_image(upload.data)}); "
                               f"send one of: {SUPPORTED}.")
    try:
        with warnings.catch_warnings():
            # the pixel bound below replaces Pillow's DecompressionBombWarning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UploadError(413, f"'{upload.name}' is {width}x{height} pixels, more than the "
                                           f"{max_pixels:,} allowed; resize it before sending.")
                image.load()  # decode now: a truncated file fails here, with its name
                return image.convert("RGB")
    except UploadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UploadError(400, f"'{upload.name}' starts like a {kind} image but cannot be decoded ({exc}); "
                               "the file is truncated or corrupt.") from None
