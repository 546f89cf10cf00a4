"""Screen-space effects on a rendered street view (float RGB [H, W, 3] in [0, 1]):
falling rain and snow, a lens flare (glare), a windscreen reflection, and the camera
and compression faults that make up `quality`.

Sizes scale with the image height, so a cue drawn at 128 px survives at 64 px.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clipadapt.synthetic.atmosphere import smooth_noise


def _blend(arr: np.ndarray, colour, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return arr * (1 - a) + np.asarray(colour, np.float32) * a


def _mask_canvas(height: int, width: int):
    mask = Image.new("L", (width, height), 0)
    return mask, ImageDraw.Draw(mask)


def rain(arr: np.ndarray, rng: np.random.Generator, brightness: float) -> np.ndarray:
    """Slanted light streaks all over the picture."""
    h, w = arr.shape[:2]
    mask, draw = _mask_canvas(h, w)
    slant = rng.uniform(-0.3, 0.3)
    for _ in range(int(h * w / rng.uniform(30, 60))):
        x, y = rng.uniform(-0.1 * w, w), rng.uniform(-0.1 * h, h)
        length = rng.uniform(0.05, 0.12) * h
        draw.line([(x, y), (x + slant * length, y + length)], fill=int(rng.integers(110, 230)), width=max(1, h // 128))
    alpha = np.asarray(mask, np.float32) / 255 * rng.uniform(0.35, 0.55)
    return _blend(arr, np.array([0.82, 0.84, 0.88]) * max(brightness, 0.45), alpha)


def snowfall(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soft white flakes of several sizes."""
    h, w = arr.shape[:2]
    mask, draw = _mask_canvas(h, w)
    scale = h / 128
    for _ in range(int(h * w / rng.uniform(45, 90))):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.5, 1.6) * scale
        draw.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.integers(170, 256)))
    mask = mask.filter(ImageFilter.GaussianBlur(0.4 * scale))
    return _blend(arr, (0.96, 0.96, 0.98), np.asarray(mask, np.float32) / 255 * 0.9)


def glare(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A LOCAL cue: a bright source with a halo, a starburst and lens ghosts, somewhere
    in the picture (sun, headlight, reflection off glass), screen-blended."""
    h, w = arr.shape[:2]
    sx, sy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.8) * h
    r = rng.uniform(0.045, 0.09) * h
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    dist = np.hypot(cols - sx, rows - sy)
    angle = np.arctan2(rows - sy, cols - sx)
    spokes = int(rng.integers(2, 5)) * 2
    burst = np.abs(np.cos(spokes / 2 * (angle - rng.uniform(0, np.pi)))) ** 60 * np.exp(-dist / (5 * r))
    flare = 1.3 * np.exp(-((dist / r) ** 2)) + 0.5 * np.exp(-dist / (1.8 * r)) + 0.9 * burst
    ghost_colour = np.array([0.55, 0.8, 1.0], np.float32) if rng.random() < 0.5 else np.array([0.6, 1.0, 0.6], np.float32)
    ghosts = np.zeros_like(dist)
    for k in rng.uniform(0.3, 1.6, int(rng.integers(1, 4))):  # along the line through the image centre
        gx, gy = w / 2 + (w / 2 - sx) * k, h / 2 + (h / 2 - sy) * k
        ghosts += 0.25 * (np.hypot(cols - gx, rows - gy) < r * rng.uniform(0.3, 0.8))
    light = np.clip(flare, 0, 1)[..., None] * np.array([1.0, 0.95, 0.82], np.float32) + ghosts[..., None] * ghost_colour
    return 1 - (1 - arr) * (1 - np.clip(light, 0, 1))


def reflection(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shot through a windscreen: a washed-out band with the dashboard's mirrored shapes
    (soft blobs, a few bright slanted streaks) under a curved upper edge."""
    h, w = arr.shape[:2]
    top = rng.uniform(0.05, 0.7) * h
    depth = rng.uniform(0.2, 0.35) * h
    cols = np.arange(w, dtype=np.float32)
    edge = top + rng.uniform(0.02, 0.08) * h * np.sin(np.pi * cols / w * rng.uniform(0.7, 1.6) + rng.uniform(0, np.pi))
    rows = np.arange(h, dtype=np.float32)[:, None]
    inside = np.clip((rows - edge[None, :]) / 1.5, 0, 1) * np.clip((edge[None, :] + depth - rows) / (0.3 * depth), 0, 1)
    shapes = 0.45 + 0.35 * smooth_noise(rng, h, w, int(rng.integers(3, 7)))
    mask, draw = _mask_canvas(h, w)
    for _ in range(int(rng.integers(2, 6))):
        x = rng.uniform(0, w)
        draw.line([(x, edge.min()), (x + rng.uniform(-0.5, 0.5) * depth, edge.max() + depth)], fill=255, width=max(1, int(rng.uniform(0.02, 0.05) * h)))
    shapes = np.clip(shapes + 0.35 * np.asarray(mask, np.float32) / 255, 0, 1)
    alpha = (inside * rng.uniform(0.4, 0.6))[..., None]
    return arr * (1 - alpha) + shapes[..., None] * np.array([0.88, 0.92, 1.0], np.float32) * alpha


def _jpeg(arr: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255


def _blur(arr: np.ndarray, sigma: float) -> np.ndarray:
    img = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(sigma))
    return np.asarray(img, np.float32) / 255


def degrade(arr: np.ndarray, quality: str, rng: np.random.Generator) -> np.ndarray:
    """'slightly poor': blur, sensor noise and strong compression; 'very poor': a
    low-resolution, noisy, blocky picture, often badly exposed. 'good' is untouched."""
    if quality == "good":
        return arr
    h, w = arr.shape[:2]
    scale = h / 128
    if quality == "slightly poor":
        arr = _blur(arr, rng.uniform(1.1, 1.9) * scale)
        arr = arr + rng.normal(0, rng.uniform(0.02, 0.045), arr.shape).astype(np.float32)
        return _jpeg(arr, int(rng.integers(18, 40)))
    factor = rng.uniform(3.5, 6.0)
    small = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8)).resize((max(int(w / factor), 4), max(int(h / factor), 4)), Image.BILINEAR)
    arr = np.asarray(small.resize((w, h), Image.BILINEAR), np.float32) / 255
    arr = arr + rng.normal(0, rng.uniform(0.05, 0.09), arr.shape).astype(np.float32)
    if rng.random() < 0.4:  # over- or under-exposed
        arr = arr * 0.55 + 0.4 if rng.random() < 0.5 else arr * 0.55
    return _jpeg(arr, int(rng.integers(5, 14)))
