"""Image files a scraped folder really holds, written with PIL (and a few raw bytes):
the unusual but usable ones, and the unusable ones with the reason clipadapt must give.

Shared by tests/test_bad_images.py and tests/test_fuzz.py.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_header(width: int, height: int, idat: bytes) -> bytes:
    """A grayscale 8-bit PNG whose header claims width x height, with the given pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def zlib_bomb(width: int, height: int) -> bytes:
    """A real decompression bomb: width x height black pixels, ~1000:1 compressed."""
    squeeze = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    out = [squeeze.compress(row * 256) for _ in range(height // 256)]
    out.append(squeeze.compress(row * (height % 256)))
    return b"".join(out) + squeeze.flush()


def _save(image: Image.Image, path: Path, **kwargs) -> None:
    image.save(path, **kwargs)


def _noise(size=(64, 64), seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _exif_rotated(path: Path) -> None:
    # stored 40 x 20, left half red, right half blue; orientation 6 = "rotate 90 clockwise to view"
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)


def _palette_transparent(path: Path) -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0] + [200, 0, 0] * 255)
    image.save(path, transparency=0)  # index 0 (black) is transparent: must come out white


def _truncated(path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    _noise().save(buf, fmt)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 6 // 10])


def _png_as_jpg(path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 200, 0)).save(buf, "PNG")
    path.write_bytes(buf.getvalue())  # a PNG with a .jpg name: the content decides, not the name


# name -> (writer, expected RGB at the centre or None, expected (width, height))
USABLE: dict[str, tuple[Callable[[Path], None], tuple | None, tuple[int, int]]] = {
    "cmyk.jpg": (lambda p: _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), p), (255, 0, 0), (16, 16)),
    "gray16.png": (lambda p: _save(Image.fromarray(np.full((16, 16), 128 * 257, np.uint16)), p), (128, 128, 128), (16, 16)),
    "float.tif": (lambda p: _save(Image.fromarray(np.full((16, 16), 0.5, np.float32)), p), (128, 128, 128), (16, 16)),
    "palette.png": (lambda p: _save(Image.new("RGB", (16, 16), (0, 0, 200)).convert("P", palette=Image.ADAPTIVE), p),
                    (0, 0, 200), (16, 16)),
    "palette_transparent.png": (_palette_transparent, (255, 255, 255), (8, 8)),
    "rgba_transparent.png": (lambda p: _save(Image.new("RGBA", (16, 16), (255, 0, 0, 0)), p), (255, 255, 255), (16, 16)),
    "rgba_half.png": (lambda p: _save(Image.new("RGBA", (16, 16), (0, 0, 0, 128)), p), (127, 127, 127), (16, 16)),
    "la.png": (lambda p: _save(Image.new("LA", (16, 16), (0, 0)), p), (255, 255, 255), (16, 16)),
    "gray.png": (lambda p: _save(Image.new("L", (16, 16), 100), p), (100, 100, 100), (16, 16)),
    "bilevel.png": (lambda p: _save(Image.new("1", (16, 16), 1), p), (255, 255, 255), (16, 16)),
    "exif_rotated.jpg": (_exif_rotated, None, (20, 40)),
    "png_named.jpg": (_png_as_jpg, (0, 200, 0), (8, 8)),
    "one_pixel.png": (lambda p: _save(Image.new("RGB", (1, 1), (9, 9, 9)), p), (9, 9, 9), (1, 1)),
    "animated.gif": (lambda p: _save(Image.new("RGB", (8, 8), (255, 255, 255)), p, save_all=True,
                                     append_images=[Image.new("RGB", (8, 8), (0, 0, 0))]), (255, 255, 255), (8, 8)),
    "photo.webp": (lambda p: _save(Image.new("RGB", (16, 16), (0, 0, 255)), p, lossless=True), (0, 0, 255), (16, 16)),
}

# name -> (writer or None for "no file at all", words the reason must contain)
UNUSABLE: dict[str, tuple[Callable[[Path], None] | None, str]] = {
    "zero_bytes.jpg": (lambda p: p.write_bytes(b""), "empty file"),
    "truncated.jpg": (lambda p: _truncated(p, "JPEG"), "truncated"),
    "truncated.png": (lambda p: _truncated(p, "PNG"), "truncated"),
    "html.jpg": (lambda p: p.write_text("<html><body>404 Not Found</body></html>"), "not an image file"),
    "noise.png": (lambda p: p.write_bytes(np.random.default_rng(1).bytes(3000)), "not an image file"),
    "header_bomb.png": (lambda p: p.write_bytes(png_with_header(50_000, 50_000, zlib.compress(b"\x00" * 64))),
                        "decompression bomb"),
    "zlib_bomb.png": (lambda p: p.write_bytes(png_with_header(12_000, 8_000, zlib_bomb(12_000, 8_000))),
                      "exceeds the limit"),
    "strip.png": (lambda p: _save(Image.new("RGB", (2000, 10)), p), "strip"),
    "missing.jpg": (None, "not found"),
    "folder.jpg": (lambda p: p.mkdir(), "folder"),
}


def write_case(folder: Path, name: str) -> Path:
    """Write the case `name` (of USABLE or UNUSABLE) into `folder`; returns its path."""
    writer = USABLE[name][0] if name in USABLE else UNUSABLE[name][0]
    path = Path(folder) / name
    if writer is not None:
        writer(path)
    return path
