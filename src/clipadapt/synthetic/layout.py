"""The random street a picture is taken in: where the camera stands and looks, the strips
of ground across the road, the building rows, the tunnel and the props.

Only `platform`, `view_direction` and `pano_status` shape the layout; every other
choice here (widths, colours, heights, positions) is nuisance that carries no label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clipadapt.synthetic.camera import Camera, rotation

# Half-width (m) of the strip the camera stands on, per platform.
STRIP_HALF = {
    "driving surface": (3.2, 7.0),
    "cycling surface": (0.9, 1.4),
    "walking surface": (1.4, 3.2),
    "railway": (1.6, 1.9),
    "fields": (0.8, 1.6),
    "tunnel": (3.5, 5.5),
}


@dataclass
class FacadeRow:
    """Buildings along one side of the road: one vertical plane x = plane_x, cut into
    segments [edges[i], edges[i+1]) along y, each with a height (0 = gap), a wall colour
    and a window spacing."""

    plane_x: float
    edges: np.ndarray
    heights: np.ndarray
    colours: np.ndarray
    window_step: np.ndarray


@dataclass
class Tunnel:
    """A half-cylinder around the road axis from y = -back to y = ahead."""

    radius: float
    centre_z: float
    ahead: float
    back: float
    lamp_colour: np.ndarray
    wall_colour: np.ndarray


@dataclass
class Prop:
    """A billboard-like object standing on the ground: 'tree', 'lamp', 'car' or 'pole'."""

    kind: str
    x: float
    y: float
    height: float
    width: float
    colour: np.ndarray


@dataclass
class Street:
    """Everything the shader needs to know about the world."""

    platform: str
    strip_half: float
    palette: dict[str, np.ndarray]
    facades: list[FacadeRow] = field(default_factory=list)
    tunnel: Tunnel | None = None
    props: list[Prop] = field(default_factory=list)
    lane_lines: np.ndarray = field(default_factory=lambda: np.zeros(0))
    crop_angle: float = 0.0
    has_track: bool = True
    second_track: bool = False
    road_side: float = 1.0  # which side (+1 right, -1 left) the car road lies for bike/walk paths


def _colour(rng: np.random.Generator, base, spread: float) -> np.ndarray:
    return np.clip(np.asarray(base, np.float32) + rng.uniform(-spread, spread, 3), 0.02, 0.98).astype(np.float32)


def random_palette(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Surface colours of one street (each jittered so colour alone never names a class)."""
    grass = [(0.30, 0.50, 0.20), (0.45, 0.55, 0.25), (0.35, 0.45, 0.22)][int(rng.integers(3))]
    crop = [(0.35, 0.55, 0.22), (0.75, 0.66, 0.32), (0.48, 0.36, 0.24)][int(rng.integers(3))]
    bike = [(0.62, 0.24, 0.20), (0.30, 0.55, 0.35), (0.25, 0.40, 0.65)][int(rng.integers(3))]
    tile = [(0.72, 0.70, 0.66), (0.70, 0.62, 0.50), (0.62, 0.38, 0.30)][int(rng.integers(3))]
    return {
        "asphalt": _colour(rng, (0.33, 0.33, 0.35), 0.05),
        "pavement": _colour(rng, (0.62, 0.60, 0.57), 0.06),
        "tile": _colour(rng, tile, 0.05),
        "grass": _colour(rng, grass, 0.05),
        "crop": _colour(rng, crop, 0.05),
        "dirt": _colour(rng, (0.50, 0.40, 0.28), 0.05),
        "bike": _colour(rng, bike, 0.05),
        "ballast": _colour(rng, (0.48, 0.45, 0.42), 0.04),
        "sleeper": _colour(rng, (0.30, 0.21, 0.14), 0.03),
        "rail": _colour(rng, (0.78, 0.78, 0.80), 0.04),
        "paint": _colour(rng, (0.92, 0.92, 0.90), 0.03),
    }


def facade_row(rng: np.random.Generator, plane_x: float, sparse: bool) -> FacadeRow:
    """A row of buildings from 150 m behind to 250 m ahead; `sparse` rows (open country)
    are mostly gaps with low farm buildings."""
    widths = rng.uniform(6, 14, 60) if sparse else rng.uniform(7, 24, 40)
    edges = np.concatenate([[-150.0], -150.0 + np.cumsum(widths)])
    n = len(widths)
    gap_rate = 0.75 if sparse else 0.15
    heights = np.where(rng.random(n) < gap_rate, 0.0, rng.uniform(4, 9, n) if sparse else rng.uniform(6, 28, n))
    colours = rng.uniform(0.25, 0.8, (n, 3)).astype(np.float32)
    return FacadeRow(plane_x, edges, heights.astype(np.float32), colours, rng.uniform(2.4, 4.0, n).astype(np.float32))


def _props(rng: np.random.Generator, street: Street, verge_x: tuple[float, float]) -> list[Prop]:
    """Trees, street lamps and cars at random places beside (and, for cars, on) the road."""
    props = []
    for _ in range(int(rng.integers(3, 10))):
        side = rng.choice([-1.0, 1.0])
        x = side * rng.uniform(*verge_x)
        y = rng.uniform(-40, 90)
        if rng.random() < 0.6:
            props.append(Prop("tree", x, y, rng.uniform(4, 9), rng.uniform(1.5, 3.2), _colour(rng, (0.22, 0.42, 0.18), 0.08)))
        elif street.platform != "fields":
            props.append(Prop("lamp", x, y, rng.uniform(5, 8), 0.18, _colour(rng, (0.3, 0.3, 0.32), 0.05)))
    if street.platform in ("driving surface", "tunnel"):
        for _ in range(int(rng.integers(0, 4))):
            x = rng.uniform(-street.strip_half + 1, street.strip_half - 1)
            props.append(Prop("car", x, rng.uniform(8, 70), rng.uniform(1.3, 1.7), 1.8, _colour(rng, rng.uniform(0.1, 0.9, 3), 0.0)))
    if street.platform == "railway":
        for y in np.arange(rng.uniform(5, 30), 200, 50.0):
            props.append(Prop("pole", 2.6 * street.road_side, float(y), 6.5, 0.25, _colour(rng, (0.4, 0.4, 0.42), 0.04)))
    return props


def build_street(platform: str, rng: np.random.Generator) -> Street:
    """A random street for a platform (the surface the camera stands on)."""
    half = float(rng.uniform(*STRIP_HALF[platform]))
    street = Street(platform, half, random_palette(rng), road_side=float(rng.choice([-1.0, 1.0])))
    if platform == "driving surface":
        lanes = max(2, int(round(2 * half / 3.3)))
        street.lane_lines = np.linspace(-half, half, lanes + 1)[1:-1]
    street.crop_angle = float(rng.uniform(-0.4, 0.4))
    street.has_track = rng.random() < 0.6
    street.second_track = rng.random() < 0.5
    # the built-up edge: how far from the strip the facades start
    if platform == "fields":
        near = rng.uniform(35, 120)
    elif platform == "railway":
        near = half + rng.uniform(6, 18)
    else:
        near = half + rng.uniform(3, 9)
    sparse = platform == "fields" or rng.random() < 0.1
    street.facades = [facade_row(rng, -near - rng.uniform(0, 4), sparse), facade_row(rng, near + rng.uniform(0, 4), sparse)]
    if platform == "tunnel":
        wall = _colour(rng, (0.5, 0.48, 0.45), 0.08)
        lamp = np.array([1.0, 0.75, 0.4] if rng.random() < 0.6 else [0.95, 0.97, 1.0], np.float32)
        street.tunnel = Tunnel(half + rng.uniform(1.0, 2.5), float(rng.uniform(0.0, 1.0)), float(rng.uniform(60, 250)),
                               float(rng.uniform(60, 250)), lamp, wall)
    street.props = _props(rng, street, (half + 1.0, min(abs(street.facades[0].plane_x), near) - 0.5))
    return street


def build_camera(street: Street, view: str, pano: bool, size: int, rng: np.random.Generator) -> Camera:
    """Where the photographer stands and looks.

    front/back: looking along the road (yaw near 0 or 180 degrees) so its edges meet at a
    vanishing point; side: looking across it (yaw near +-90) at a facade. Panoramas are
    2:1 equirectangular, centred on that direction, and tilted a little more so that the
    horizon bows.
    """
    along = view == "front/back"
    look = float(rng.choice([-1.0, 1.0]))  # sideways: +1 looks right (+x), -1 left
    yaw = (0.0 if rng.random() < 0.7 else np.pi) if along else look * np.pi / 2
    yaw += rng.normal(0, 0.08)
    cam_x = rng.uniform(-0.5, 0.5) * street.strip_half
    if street.platform == "driving surface" and len(street.lane_lines) and not pano:
        cam_x = rng.uniform(-street.strip_half + 1.5, street.strip_half - 1.5)
    pitch = rng.normal(0.0, 0.04)
    if not along:
        # Looking across, the photographer stands at the far edge of the strip and the
        # picture dips a little, so the surface underfoot stays in view.
        cam_x = -look * street.strip_half * rng.uniform(0.5, 0.95)
        pitch = -rng.uniform(0.12, 0.3)
    if pano:
        height = rng.uniform(2.2, 2.8)  # on a car roof or a backpack pole
        tilt = rng.uniform(0.08, 0.2)
        direction = rng.uniform(0, 2 * np.pi)
        pitch, roll = pitch + tilt * np.cos(direction), tilt * np.sin(direction)
        rot = rotation(yaw, pitch, roll)
        return Camera("equirect", size, 2 * size, np.array([cam_x, 0.0, height], np.float32), rot)
    height = rng.uniform(1.3, 2.2)
    roll = rng.normal(0.0, 0.025)
    width = size if rng.random() < 0.5 else int(round(size * 4 / 3))
    return Camera("pinhole", size, width, np.array([cam_x, 0.0, height], np.float32), rotation(yaw, pitch, roll), hfov=rng.uniform(1.1, 1.6))
