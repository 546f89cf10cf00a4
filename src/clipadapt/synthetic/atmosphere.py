"""Light, sky and air: how `lighting_condition` and `weather` colour the ray-cast frame.

Lighting sets the sky gradient, the colour and strength of the light on every outdoor
surface, and whether windows and lamps glow. Weather sets clouds or overcast, wet or
snow-covered ground, and how fast distance fades into haze (fog fades within tens of
metres). Tunnel interiors are lit by their lamps, so inside a tunnel only the exit
shows the time of day - as in real photos.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from clipadapt.synthetic.surfaces import GROUND, PROP, SKY, Frame

# lighting -> (sky at the horizon, sky at the zenith, light on surfaces)
LIGHTING = {
    "day": ((0.80, 0.87, 0.95), (0.28, 0.52, 0.88), (1.0, 0.98, 0.94)),
    "dusk/dawn": ((1.0, 0.60, 0.32), (0.30, 0.25, 0.50), (0.68, 0.45, 0.32)),
    "night": ((0.07, 0.08, 0.15), (0.01, 0.015, 0.05), (0.10, 0.11, 0.16)),
}
# weather -> (surface light factor, overcast grey or None, visibility in metres)
WEATHER = {
    "clear": (1.0, None, (600, 1500)),
    "cloudy": (0.8, None, (400, 900)),
    "foggy": (0.8, (0.80, 0.81, 0.82), (10, 30)),
    "rainy": (0.6, (0.45, 0.47, 0.50), (90, 180)),
    "snowy": (0.9, (0.82, 0.83, 0.86), (70, 150)),
}
# how bright an overcast sky is under each lighting (it carries the light's tint)
SKY_LEVEL = {"day": 1.0, "dusk/dawn": 0.6, "night": 0.12}
LIT_WINDOWS = {"day": 0.0, "dusk/dawn": 0.15, "night": 0.45}


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Soft random field in [0, 1] at screen resolution (two octaves of upsampled noise)."""
    out = np.zeros((height, width), np.float32)
    for octave, weight in ((cells, 0.7), (cells * 3, 0.3)):
        grid = rng.random((max(octave // 2, 2), max(octave, 2))).astype(np.float32)
        out += weight * np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.BICUBIC))
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def sky_colour(elevation: np.ndarray, lighting: str, weather: str, clouds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sky seen along rays with the given elevation (radians) [n]; `clouds` in [0, 1]."""
    horizon, zenith, light = (np.asarray(c, np.float32) for c in LIGHTING[lighting])
    up = np.clip(elevation / 0.7, 0, 1)[:, None] ** 0.6
    sky = horizon * (1 - up) + zenith * up
    overcast = WEATHER[weather][1]
    level = SKY_LEVEL[lighting]
    tint = light / max(float(light.max()), 1e-6)
    if overcast is not None:
        grey = np.asarray(overcast, np.float32) * level * tint
        sky = sky * 0.12 + grey * 0.88 * (0.93 + 0.14 * clouds[:, None])
    elif weather == "cloudy":
        coverage = rng.uniform(0.45, 0.85)
        edge = np.clip((clouds - (1 - coverage)) / 0.15, 0, 1)[:, None]
        cloud = np.array([0.88, 0.88, 0.90], np.float32) * level * tint * (0.75 + 0.25 * clouds[:, None])
        sky = sky * (1 - edge) + cloud * edge
    return sky


def snow_cover(frame: Frame, patches: np.ndarray, rng: np.random.Generator) -> None:
    """Whiten outdoor ground in patches (`patches` in [0, 1] per pixel) and dust props."""
    ground = (frame.kind == GROUND) & ~frame.indoor
    amount = rng.uniform(0.55, 0.9)
    cover = np.clip(amount + 0.5 * (patches - 0.5), 0, 1) * ground
    snow = np.array([0.93, 0.94, 0.97], np.float32)
    frame.albedo[:] = frame.albedo * (1 - cover[:, None]) + snow * cover[:, None]
    dusted = (frame.kind == PROP) * 0.3
    frame.albedo[:] = frame.albedo * (1 - dusted[:, None]) + snow * dusted[:, None]


def compose(frame: Frame, dirs: np.ndarray, height: int, width: int, lighting: str, weather: str,
            rng: np.random.Generator, tunnel_light: np.ndarray | None = None) -> np.ndarray:
    """Light the frame and add sky and haze: returns RGB in [0, 1], [H, W, 3]."""
    outdoor = ~frame.indoor
    if weather == "snowy":
        snow_cover(frame, smooth_noise(rng, height, width, 12).reshape(-1), rng)
    if weather == "rainy":  # wet surfaces are darker
        wet = (frame.kind == GROUND) & outdoor
        frame.albedo[wet] *= 0.7
    light_factor, _, visibility = WEATHER[weather]
    light = np.asarray(LIGHTING[lighting][2], np.float32) * light_factor * rng.uniform(0.85, 1.1)
    lamp = tunnel_light if tunnel_light is not None else light
    lit = np.where(outdoor[:, None], light, lamp * 0.6)
    rgb = frame.albedo * lit + frame.emissive

    sky = frame.kind == SKY
    clouds = smooth_noise(rng, height, width, int(rng.integers(4, 9))).reshape(-1)
    elevation = np.arcsin(np.clip(dirs[:, 2], -1, 1))
    rgb[sky] = sky_colour(elevation[sky], lighting, weather, clouds[sky], rng)
    if lighting == "night" and weather == "clear":
        stars = sky & (rng.random(len(sky)) < 0.004)
        rgb[stars] = 0.75

    horizon = np.asarray(LIGHTING[lighting][0], np.float32)
    if WEATHER[weather][1] is not None:
        horizon = np.asarray(WEATHER[weather][1], np.float32) * SKY_LEVEL[lighting] * (light / max(float(light.max()), 1e-6))
    haze = 1 - np.exp(-frame.depth / rng.uniform(*visibility))
    haze = np.where(sky, 1.0 if weather == "foggy" else 0.0, haze)
    if weather != "foggy":
        haze *= 0.6  # clear air: distance only softens, it never erases
    rgb = rgb * (1 - haze[:, None]) + horizon * haze[:, None]
    return np.clip(rgb, 0, 1).reshape(height, width, 3)
