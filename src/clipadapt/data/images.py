"""Opening images safely: every failure becomes one message naming the file and its row.

Whatever a scraped folder holds (empty or truncated files, HTML saved as .jpg, CMYK,
16-bit, palette or transparent images, EXIF-rotated phone photos, decompression bombs)
ends up either as an 8-bit RGB image the model can use, or as a `BadImage` error whose
`reason` says what is wrong; never as a traceback.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clipadapt.errors import ClipAdaptError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# Pillow's own default (89.5 M pixels, ~ 9500 x 9500); a street-view panorama is 2-17 M.
# Above it an image is refused before a single pixel is decoded: a 50 kB PNG can claim
# 60000 x 60000 pixels and take 10 GB once decoded.
MAX_PIXELS = int(os.environ.get("CLIPADAPT_MAX_IMAGE_PIXELS", "89478485"))
# Resizing the short side of a 100000 x 10 strip to 224 px would make a 2-gigapixel image.
MAX_ASPECT_RATIO = 100
# Transparent pixels are shown on white, as an image viewer or a web page shows them.
MATTE = (255, 255, 255)
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
WIDE_INT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}

# Our own pixel limit is checked on the header, before Pillow's; Pillow's warning for the
# same case would only repeat it on stderr. Its hard error (2x the limit) is still caught.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


# The other way out of an unusable image, for the runs that data.on_bad_image=fail stopped:
# the user should not have to know the policy exists to find it.
SKIP_FIX = ("or leave such images out with --on-bad-image skip (config: data.on_bad_image: skip), "
            "which lists each with its reason in skipped_images.csv")


def with_skip_fix(message: str) -> str:
    """`message` (ending in its own fix) with the skip policy offered as well."""
    return f"{message.rstrip().rstrip('.')}, {SKIP_FIX}."


class BadImage(ClipAdaptError):
    """An image that cannot be used; `reason` is the short why (for skip lists)."""

    def __init__(self, message: str, path: Path | str | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = str(path) if path is not None else None
        self.reason = reason or str(self)

    def with_skip_fix(self) -> BadImage:
        """This error offering --on-bad-image skip too (raised where the fail policy stops a run)."""
        return BadImage(with_skip_fix(str(self)), self.path, self.reason)


def _refuse(path: Path, origin: str, reason: str) -> BadImage:
    return BadImage(f"Unreadable image: {path}{origin}: {reason}. Replace the file or remove the row.", path, reason)


def load_image(path: Path | str, where: str | None = None) -> Image.Image:
    """Open `path` as 8-bit RGB, fully decoded and upright (EXIF orientation applied).

    `where` (e.g. 'train/weather.csv line 17') is named in the error so the user knows
    which row to fix. Raises BadImage (a ClipAdaptError) for a missing, empty, truncated,
    unrecognised, oversized or undecodable file.
    """
    path = Path(path)
    # A folder data set's rows come from the path itself: naming it twice says nothing more.
    origin = f" ({where})" if where and str(where) != str(path) else ""
    if not path.is_file():
        what = "is a folder, not an image" if path.is_dir() else "not found"
        raise BadImage(f"Image {what}: {path}{origin}. Fix the path or remove the row.", path,
                       "folder, not a file" if path.is_dir() else "file not found")
    try:
        if path.stat().st_size == 0:
            raise _refuse(path, origin, "empty file (0 bytes)")
        with Image.open(path) as img:
            _check_dimensions(img.size, path, origin)
            img.load()  # decode now: truncated files fail here, not later inside a transform
            return to_rgb(upright(img))
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise _refuse(path, origin, f"too many pixels, a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise _refuse(path, origin, "not an image file (no known image format; is it HTML or text?)") from None
    except OSError as exc:
        raise _refuse(path, origin, f"truncated or corrupt image data ({exc})") from None
    except MemoryError:
        raise _refuse(path, origin, "too large to decode in memory") from None
    except Exception as exc:  # decoders raise SyntaxError, ValueError, struct.error ... on hostile bytes
        raise _refuse(path, origin, f"cannot be decoded ({type(exc).__name__}: {exc})") from None


def _check_dimensions(size: tuple[int, int], path: Path, origin: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise _refuse(path, origin, f"has no pixels ({width} x {height})")
    if width * height > MAX_PIXELS:
        raise _refuse(path, origin, f"{width} x {height} = {width * height:,} pixels exceeds the limit of "
                                    f"{MAX_PIXELS:,} (a decompression bomb?); if the image is genuine, "
                                    "set CLIPADAPT_MAX_IMAGE_PIXELS higher")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise _refuse(path, origin, f"{width} x {height} is a strip, not a photo (sides differ more than "
                                    f"{MAX_ASPECT_RATIO}x); crop it")


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (phone photos are stored sideways)."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # damaged EXIF says nothing reliable about orientation: keep the pixels as stored
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB of any Pillow mode: 16/32-bit and float images are rescaled (Pillow's own
    convert clips them to white), transparency is composited on a white matte, CMYK,
    palette, grayscale and the rest go through Pillow's conversion."""
    if img.mode == "RGB":
        return img
    if img.mode in WIDE_INT_MODES or img.mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(img)), mode="L").convert("RGB")
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA") if img.mode != "La" else img.convert("LA").convert("RGBA")
        matte = Image.new("RGBA", rgba.size, MATTE + (255,))
        return Image.alpha_composite(matte, rgba).convert("RGB")
    return img.convert("RGB")


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Scale wide pixel values into 0..255: float images in [0, 1] by 255, integer images
    by their 16-bit range (values above 255 can only come from a 16-bit source)."""
    values = pixels.astype(np.float64)
    finite = values[np.isfinite(values)]
    peak = float(finite.max()) if finite.size else 0.0
    if pixels.dtype.kind == "f":
        scale = 255.0 if peak <= 1.0 else 1.0
    else:
        scale = 1.0 / 257.0 if peak > 255 else 1.0
    return np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)

