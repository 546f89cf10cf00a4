"""Synthetic street views with all eight Global StreetScapes attributes.

Every class leaves a visible cue, some global (sky colour for lighting, haze for fog),
some local (a small flare for glare, rails for railway), on top of random nuisance
(buildings, trees, colours, positions), with class priors as imbalanced as the real
data. `write_gss_dataset` writes the GSS folder layout, so the real reader reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute

# Class priors, roughly as skewed as the real GSS labels.
PRIORS: dict[str, dict[str, float]] = {
    "glare": {"no": 0.85, "yes": 0.15},
    "lighting_condition": {"day": 0.75, "dusk/dawn": 0.12, "night": 0.13},
    "pano_status": {"false": 0.75, "true": 0.25},
    "platform": {"driving surface": 0.45, "walking surface": 0.2, "cycling surface": 0.08, "fields": 0.1,
                 "railway": 0.08, "tunnel": 0.09},
    "quality": {"good": 0.65, "slightly poor": 0.25, "very poor": 0.10},
    "reflection": {"no": 0.8, "yes": 0.2},
    "view_direction": {"front/back": 0.65, "side": 0.35},
    "weather": {"clear": 0.45, "cloudy": 0.3, "foggy": 0.08, "rainy": 0.1, "snowy": 0.07},
}
ATTRIBUTES = tuple(sorted(PRIORS))


def sample_scene_labels(rng: np.random.Generator) -> dict[str, str]:
    """One class per attribute, drawn from the imbalanced priors."""
    return {a: str(rng.choice(list(p), p=list(p.values()))) for a, p in PRIORS.items()}


def covering_labels(i: int, rng: np.random.Generator) -> dict[str, str]:
    """Labels of the i-th of the first images of a split: cycle through every class so
    that each class occurs in every split whatever the priors."""
    labels = sample_scene_labels(rng)
    for a in ATTRIBUTES:
        classes = GSS_SCHEMA[a][1]
        labels[a] = classes[i % len(classes)]
    return labels


# ----------------------------------------------------------------------------- drawing
def _mix(c1, c2, t):
    return tuple(int(a + (b - a) * t) for a, b in zip(c1, c2))


SKY = {  # (top colour, horizon colour)
    "day": ((70, 130, 220), (170, 205, 240)),
    "dusk/dawn": ((90, 60, 130), (250, 150, 80)),
    "night": ((5, 8, 25), (30, 35, 60)),
}


def _sky(draw: ImageDraw.ImageDraw, w: int, horizon: int, labels, rng) -> None:
    top, bottom = SKY[labels["lighting_condition"]]
    if labels["weather"] in ("cloudy", "rainy", "snowy"):
        grey = (120, 120, 125) if labels["lighting_condition"] != "night" else (30, 30, 35)
        top, bottom = _mix(top, grey, 0.7), _mix(bottom, grey, 0.6)
    for y in range(horizon):
        draw.line([(0, y), (w, y)], fill=_mix(top, bottom, y / max(horizon - 1, 1)))
    if labels["lighting_condition"] == "night":
        for _ in range(int(rng.integers(5, 15))):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, max(horizon - 2, 1)))
            draw.point((x, y), fill=(230, 230, 200))
    if labels["weather"] == "cloudy":
        for _ in range(int(rng.integers(3, 7))):
            cx, cy = rng.integers(0, w), rng.integers(0, max(horizon // 2, 1))
            rx, ry = rng.integers(w // 10, w // 4), rng.integers(horizon // 10 + 1, horizon // 4 + 2)
            shade = 200 if labels["lighting_condition"] == "day" else 90
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=(shade, shade, shade + 5))


GROUND = {
    "driving surface": (60, 60, 65), "walking surface": (190, 180, 160), "cycling surface": (170, 60, 50),
    "fields": (70, 140, 60), "railway": (120, 100, 80), "tunnel": (50, 45, 40),
}


def _ground(draw, w, h, horizon, labels, rng) -> None:
    platform, side = labels["platform"], labels["view_direction"] == "side"
    base = GROUND[platform]
    draw.rectangle([0, horizon, w, h], fill=base)
    cx = w // 2 + int(rng.integers(-w // 10, w // 10 + 1))
    if platform == "fields":
        for _ in range(w // 2):
            x, y = int(rng.integers(0, w)), int(rng.integers(horizon, h))
            draw.line([(x, y), (x + int(rng.integers(-2, 3)), y - 3)], fill=(40, 110, 35))
        return
    if side:  # lateral view: surface features run across the image
        for k in range(3):
            y = horizon + (h - horizon) * (k + 1) // 4
            if platform == "driving surface":
                for x in range(0, w, 14):
                    draw.line([(x, y), (x + 7, y)], fill=(235, 235, 235), width=2)
            elif platform == "railway":
                draw.line([(0, y), (w, y)], fill=(200, 200, 210), width=2)
                for x in range(0, w, 8):
                    draw.line([(x, y - 4), (x, y + 4)], fill=(80, 55, 35), width=2)
            elif platform == "walking surface":
                draw.line([(0, y), (w, y)], fill=(150, 140, 120))
                for x in range(0, w, 10):
                    draw.line([(x, horizon), (x, h)], fill=(150, 140, 120))
            elif platform == "cycling surface" and k == 1:
                draw.line([(0, y), (w, y)], fill=(245, 245, 245), width=3)
        return
    # along the road: lines converge to a vanishing point on the horizon
    for frac in (-0.45, 0.45):
        draw.line([(cx, horizon), (cx + int(frac * w * 1.6), h)], fill=_mix(base, (255, 255, 255), 0.3), width=2)
    if platform == "driving surface":
        for y in range(horizon + 4, h, 10):
            draw.line([(cx, y), (cx, min(y + 5, h))], fill=(240, 230, 120), width=2)
    elif platform == "railway":
        for off in (-0.12, 0.12):
            draw.line([(cx, horizon), (cx + int(off * w * 2.2), h)], fill=(215, 215, 225), width=2)
        for y in range(horizon + 3, h, 6):
            half = int((y - horizon) / max(h - horizon, 1) * w * 0.3) + 2
            draw.line([(cx - half, y), (cx + half, y)], fill=(80, 55, 35), width=2)
    elif platform == "walking surface":
        for y in range(horizon + 4, h, 7):
            draw.line([(0, y), (w, y)], fill=(150, 140, 120))
    elif platform == "cycling surface":
        y = horizon + (h - horizon) * 2 // 3
        draw.ellipse([cx - 8, y - 4, cx - 2, y + 2], outline=(250, 250, 250), width=2)
        draw.ellipse([cx + 2, y - 4, cx + 8, y + 2], outline=(250, 250, 250), width=2)


def _scenery(draw, w, h, horizon, labels, rng) -> None:
    """Nuisance: buildings and trees, whose colours and positions carry no label."""
    side = labels["view_direction"] == "side"
    lit = labels["lighting_condition"] != "night"
    for _ in range(int(rng.integers(2, 6))):
        bw = int(rng.integers(w // 10, w // 4))
        bh = int(rng.integers(h // 8, int(horizon * 0.9) + 1))
        if side:
            x0 = int(rng.integers(0, w))
        else:  # along the road buildings stand at the sides, leaving the vanishing point free
            x0 = int(rng.integers(0, w // 4)) if rng.random() < 0.5 else int(rng.integers(3 * w // 4, w))
        colour = tuple(int(c) for c in rng.integers(60, 200, 3)) if lit else tuple(int(c) for c in rng.integers(15, 50, 3))
        draw.rectangle([x0, horizon - bh, x0 + bw, horizon + (h // 10 if side else 0)], fill=colour)
        if not lit:  # lit windows at night
            for _ in range(3):
                wx, wy = x0 + int(rng.integers(0, max(bw, 1))), horizon - int(rng.integers(1, max(bh, 2)))
                draw.rectangle([wx, wy, wx + 2, wy + 2], fill=(250, 220, 120))
    for _ in range(int(rng.integers(0, 3))):
        x = int(rng.integers(0, w))
        draw.rectangle([x - 1, horizon - h // 8, x + 1, horizon], fill=(90, 60, 30))
        draw.ellipse([x - h // 14, horizon - h // 5, x + h // 14, horizon - h // 10], fill=(40, 120, 40) if lit else (10, 30, 10))


def _tunnel(img: Image.Image, labels, rng) -> None:
    """A tunnel closes the scene: dark walls and ceiling, a bright opening, ceiling lamps."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    ox, oy = w // 2 + int(rng.integers(-w // 12, w // 12 + 1)), int(h * 0.45)
    rx, ry = w // 7, h // 7
    mask = Image.new("L", (w, h), 255)
    ImageDraw.Draw(mask).ellipse([ox - rx, oy - ry, ox + rx, oy + ry], fill=0)
    wall = Image.new("RGB", (w, h), (70, 65, 60))
    img.paste(wall, (0, 0), mask)
    for k in range(1, 6):
        x = ox + (k * w // 12) * (1 if k % 2 else -1)
        draw.line([(ox, oy - ry), (x, 0)], fill=(95, 90, 80))
    for k in range(4):
        y = int(oy - ry - (oy - ry) * (k + 1) / 5)
        draw.rectangle([ox - 3 - 4 * k, y, ox + 3 + 4 * k, y + 2], fill=(255, 200, 90))


def _glare(img: Image.Image, rng) -> None:
    """A LOCAL cue: a small bright flare with rays somewhere in the upper part."""
    w, h = img.size
    x, y = int(rng.integers(w // 8, 7 * w // 8)), int(rng.integers(h // 10, h // 2))
    r = max(h // 14, 3)
    overlay = Image.new("RGB", (w, h), (0, 0, 0))
    d = ImageDraw.Draw(overlay)
    for k in range(6):
        angle = np.pi * k / 6 + rng.random() * 0.3
        dx, dy = int(np.cos(angle) * r * 3), int(np.sin(angle) * r * 3)
        d.line([(x - dx, y - dy), (x + dx, y + dy)], fill=(200, 190, 140), width=1)
    d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 250, 220))
    overlay = overlay.filter(ImageFilter.GaussianBlur(max(r / 3, 1)))
    img.paste(Image.fromarray(np.clip(np.asarray(img, np.int16) + np.asarray(overlay, np.int16), 0, 255).astype(np.uint8)))


def _reflection(img: Image.Image, rng) -> Image.Image:
    """Shot through a windscreen: a dark dashboard band and its ghost mirrored above."""
    w, h = img.size
    arr = np.asarray(img).astype(np.float32)
    band = int(h * rng.uniform(0.12, 0.18))
    dash = np.array([35, 30, 30], np.float32) + rng.uniform(0, 25)
    arr[h - band:] = dash
    ghost = np.zeros_like(arr)
    ghost[: h - band] = np.linspace(0.55, 0.15, h - band)[:, None, None] * 255
    ghost[:, : int(w * rng.uniform(0.2, 0.5))] *= 0.4  # a slanted edge of the reflected light
    arr = arr * 0.75 + ghost * 0.35
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _weather_overlay(img: Image.Image, weather: str, horizon: int, rng) -> Image.Image:
    w, h = img.size
    if weather == "rainy":
        d = ImageDraw.Draw(img)
        for _ in range(w * h // 90):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            d.line([(x, y), (x - 3, y + 8)], fill=(175, 180, 195), width=1)
    elif weather == "snowy":
        d = ImageDraw.Draw(img)
        d.rectangle([0, int(horizon + (h - horizon) * 0.55), w, h], fill=(235, 238, 245))
        for _ in range(w * h // 60):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            d.ellipse([x, y, x + 2, y + 2], fill=(250, 250, 250))
    elif weather == "foggy":
        arr = np.asarray(img).astype(np.float32)
        dist = np.clip(1.0 - np.abs(np.arange(h) - horizon) / (h * 0.6), 0.35, 1.0)[:, None, None]
        arr = arr * (1 - 0.75 * dist) + 200 * 0.75 * dist
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img


def _quality(img: Image.Image, quality: str, rng) -> Image.Image:
    if quality == "good":
        return img
    w, h = img.size
    factor, blur, noise = (2, 1.0, 10) if quality == "slightly poor" else (5, 1.8, 28)
    img = img.resize((max(w // factor, 4), max(h // factor, 4)), Image.BILINEAR).resize((w, h), Image.NEAREST)
    img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, noise, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _panorama_warp(img: Image.Image, rng) -> Image.Image:
    """Equirectangular look: each column shifted so straight lines bow into curves."""
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    amp = h * rng.uniform(0.08, 0.14)
    shifts = (amp * np.cos(np.linspace(0, 2 * np.pi, w) + rng.uniform(0, 2 * np.pi))).astype(int)
    rows = (np.arange(h)[:, None] - shifts[None, :]).clip(0, h - 1)
    return Image.fromarray(arr[rows, np.arange(w)[None, :]])


def render_street_scene(labels: dict[str, str], rng: np.random.Generator, size: int = 128) -> Image.Image:
    """Render one RGB street view with the given class per attribute; `size` is the
    height, panoramas are 2 * size wide (others square)."""
    h = size
    w = 2 * size if labels["pano_status"] == "true" else size
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.4, 0.55))
    _sky(draw, w, horizon, labels, rng)
    _ground(draw, w, h, horizon, labels, rng)
    if labels["platform"] != "fields" or rng.random() < 0.3:
        _scenery(draw, w, h, horizon, labels, rng)
    if labels["platform"] == "tunnel":
        _tunnel(img, labels, rng)
    img = _weather_overlay(img, labels["weather"], horizon, rng)
    if labels["lighting_condition"] == "night":
        img = Image.fromarray((np.asarray(img).astype(np.float32) * 0.55).astype(np.uint8))
    if labels["glare"] == "yes":
        _glare(img, rng)
    if labels["reflection"] == "yes":
        img = _reflection(img, rng)
    if labels["pano_status"] == "true":
        img = _panorama_warp(img, rng)
    return _quality(img, labels["quality"], rng)


def caption_for(labels: dict[str, str], rng: np.random.Generator, max_attributes: int = 3) -> str:
    """A caption naming 1..max_attributes random attributes with the GSS prompt words,
    e.g. 'a photo in foggy weather. a photo with glare.'"""
    count = int(rng.integers(1, max_attributes + 1))
    chosen = rng.choice(list(ATTRIBUTES), size=count, replace=False)
    parts = []
    for a in chosen:
        attr = gss_attribute(a, GSS_SCHEMA[a][1])
        parts.append(attr.template.format(attr.words(labels[a])))
    return " ".join(parts)


# ----------------------------------------------------------------------------- folders
def _uuid(rng: np.random.Generator) -> str:
    h = "".join(f"{b:02x}" for b in rng.integers(0, 256, 16))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _messy(label: str, rng: np.random.Generator) -> str:
    """Raw labels as people type them: random case and stray spaces (readers normalise)."""
    r = rng.random()
    if r < 0.1:
        return f" {label.capitalize()}"
    if r < 0.15:
        return f"{label.upper()} "
    return label


def write_gss_dataset(root: Path, n_train: int = 600, n_test: int = 300, seed: int = 0, image_size: int = 128,
                      label_fraction: float = 1.0) -> Path:
    """Render a Global StreetScapes-layout data set under `root` (img/1..7, train/ and
    test/<attribute>.csv for all eight attributes); re-uses a finished one with the same
    parameters (marker file written last)."""
    root = Path(root)
    params = {"n_train": n_train, "n_test": n_test, "seed": seed, "image_size": image_size,
              "label_fraction": label_fraction, "version": 1}
    marker = root / "synthetic.json"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            labels = covering_labels(i, rng) if i < 12 else sample_scene_labels(rng)
            uuid = _uuid(rng)
            rel = f"img/{int(rng.integers(1, 8))}/{uuid}.jpeg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            render_street_scene(labels, rng, image_size).save(root / rel, quality=92)
            rows.append({"uuid": uuid, "source": "synthetic", "lat": round(float(rng.uniform(-60, 60)), 5),
                         "lon": round(float(rng.uniform(-180, 180)), 5), "img_path": rel, **labels})
        table = pd.DataFrame(rows)
        (root / split).mkdir(parents=True, exist_ok=True)
        for a in ATTRIBUTES:
            keep = np.ones(len(table), bool) if label_fraction >= 1 else rng.random(len(table)) < label_fraction
            keep[:12] = True  # the class-covering images stay labelled
            sub = table.loc[keep, ["uuid", "source", "lat", "lon", "img_path", a]].copy()
            sub[a] = [_messy(v, rng) for v in sub[a]]
            sub.to_csv(root / split / f"{a}.csv", index=False)
    marker.write_text(json.dumps(params))
    return root
