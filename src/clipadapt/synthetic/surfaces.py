"""Ray casting of the street's surfaces: the textured ground, the building rows and the
tunnel. Textures live in world coordinates, so lane lines, rails and paving joints come
out in true perspective (converging when looking along the road, running across the
picture when looking sideways) with no special case per view.

Fine patterns are box-filtered by the pixel footprint at the hit point; without that,
distant sleepers and tiles alias into noise that would hide the platform cue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipadapt.synthetic.layout import FacadeRow, Street, Tunnel

SKY, GROUND, FACADE, TUNNEL, PROP, RIG = range(6)  # what each pixel shows
FAR = 3000.0  # metres: a ray that hits nothing nearer is sky


@dataclass
class Frame:
    """Per-pixel buffers, flattened to P = H*W."""

    albedo: np.ndarray  # [P, 3] surface colour before lighting
    emissive: np.ndarray  # [P, 3] light the surface gives off (lit windows, lamps)
    depth: np.ndarray  # [P] distance along the ray, FAR for sky
    kind: np.ndarray  # [P] one of SKY, GROUND, ...
    indoor: np.ndarray  # [P] bool: lit by tunnel lamps, not by the sky


def hash01(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A cheap deterministic pseudo-random value in [0, 1) per integer cell (a, b)."""
    v = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return (v - np.floor(v)).astype(np.float32)


def band(coord: np.ndarray, centre, width: float, footprint: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of a line of `width` metres at `centre`, box-filtered by the
    pixel footprint so thin far lines fade instead of flickering."""
    reach = np.maximum(width, footprint) / 2
    return np.where(np.abs(coord - centre) < reach, np.minimum(1.0, width / np.maximum(footprint, 1e-4)), 0.0)


def periodic(coord: np.ndarray, period: float, duty: float, footprint: np.ndarray) -> np.ndarray:
    """Coverage of repeating bars (`duty` of each `period`); the mean duty once a pixel
    spans more than half a period."""
    on = (np.mod(coord, period) < duty * period).astype(np.float32)
    fade = np.clip(footprint / (0.5 * period) - 0.5, 0.0, 1.0)
    return on * (1 - fade) + duty * fade


def lerp(base: np.ndarray, colour, weight: np.ndarray) -> np.ndarray:
    w = weight[:, None]
    return base * (1 - w) + np.asarray(colour, np.float32) * w


# ----------------------------------------------------------------------------- ground
def _road(col, x, y, fx, fy, street: Street, centre: float, half: float, lines) -> np.ndarray:
    """Asphalt from centre-half to centre+half with dashed lane lines and solid edges."""
    p = street.palette
    on = np.abs(x - centre) < half
    grit = 0.9 + 0.2 * hash01(np.floor(x * 3), np.floor(y * 3))
    road = p["asphalt"] * grit[:, None]
    paint = np.zeros_like(x)
    for line in lines:
        paint = np.maximum(paint, band(x, centre + line, 0.15, fx) * periodic(y, 9.0, 0.4, fy))
    for edge in (centre - half + 0.3, centre + half - 0.3):
        paint = np.maximum(paint, band(x, edge, 0.15, fx))
    road = lerp(road, p["paint"], paint)
    return np.where(on[:, None], road, col)


def _pavement(col, x, y, fx, fy, colour, lo: float, hi: float, joint: float) -> np.ndarray:
    """Paving slabs between lo and hi across the road, with dark joints every `joint` m."""
    on = (x >= lo) & (x < hi)
    shade = 0.92 + 0.12 * hash01(np.floor(x / joint), np.floor(y / joint))
    slab = np.asarray(colour, np.float32) * shade[:, None]
    seams = 1 - (1 - periodic(x, joint, 0.1, fx)) * (1 - periodic(y, joint, 0.1, fy))
    slab = slab * (1 - 0.35 * seams[:, None])
    return np.where(on[:, None], slab, col)


def _grass(x, y, street: Street) -> np.ndarray:
    # fine, low-contrast speckle: coarse cells would read as paving slabs
    tone = 0.9 + 0.1 * hash01(np.floor(x * 5), np.floor(y * 5)) + 0.08 * hash01(np.floor(x * 0.7), np.floor(y * 0.7))
    return street.palette["grass"] * tone[:, None]


def _railway(col, x, y, fx, fy, street: Street, centre: float) -> np.ndarray:
    p = street.palette
    dx = x - centre
    on = np.abs(dx) < street.strip_half
    stones = 0.8 + 0.4 * hash01(np.floor(x * 8), np.floor(y * 8))
    bed = p["ballast"] * stones[:, None]
    sleeper = (np.abs(dx) < 1.3) * periodic(y, 0.62, 0.35, fy)
    bed = lerp(bed, p["sleeper"], sleeper)
    for rail in (-0.72, 0.72):
        bed = lerp(bed, (0.12, 0.1, 0.08), band(dx, rail + 0.07, 0.06, fx))  # the rail's shadow
        bed = lerp(bed, p["rail"], band(dx, rail, 0.07, fx))
    return np.where(on[:, None], bed, col)


def _fields(x, y, fx, fy, street: Street) -> np.ndarray:
    p = street.palette
    across = x * np.cos(street.crop_angle) + y * np.sin(street.crop_angle)
    rows = periodic(across, 0.9, 0.55, np.maximum(fx, fy * abs(np.sin(street.crop_angle))))
    tone = 0.9 + 0.2 * hash01(np.floor(x / 3), np.floor(y / 3))
    col = lerp(p["crop"] * 0.55, p["crop"], rows) * tone[:, None]
    if street.has_track:
        track = np.abs(x) < street.strip_half
        dirt = p["dirt"] * (1 - 0.3 * band(np.abs(x), 0.75, 0.35, fx))[:, None]  # tyre ruts
        col = np.where(track[:, None], dirt, col)
    return col


def ground_albedo(street: Street, x, y, fx, fy) -> np.ndarray:
    """Ground colour at world points (x, y); fx / fy are the pixel footprints (m) across
    and along the road. The camera's own strip is the platform; the rest is setting."""
    p, h, s = street.palette, street.strip_half, street.road_side
    platform = street.platform
    if platform == "fields":
        return _fields(x, y, fx, fy, street)
    col = _grass(x, y, street)
    if platform in ("driving surface", "tunnel"):
        kerb = 0.4 if platform == "tunnel" else 2.5
        col = _pavement(col, x, y, fx, fy, p["pavement"], -h - kerb, h + kerb, 1.0)
        return _road(col, x, y, fx, fy, street, 0.0, h, street.lane_lines)
    if platform == "cycling surface":
        col = _pavement(col, x, y, fx, fy, p["pavement"], -h - 2.5, h + 2.5, 1.0)
        col = _road(col, x, y, fx, fy, street, s * (h + 3.8), 3.4, [0.0])
        lane = np.abs(x) < h
        paint = np.maximum(band(np.abs(x), h - 0.12, 0.12, fx), _bike_symbols(x, y, fx))
        bike = lerp(p["bike"] * (0.92 + 0.12 * hash01(np.floor(x * 4), np.floor(y * 4)))[:, None], p["paint"], paint)
        return np.where(lane[:, None], bike, col)
    if platform == "walking surface":
        col = _road(col, x, y, fx, fy, street, s * (h + 4.0), 3.6, [0.0])
        return _pavement(col, x, y, fx, fy, p["tile"], -h, h, 0.45)
    # railway: the track the camera stands on, maybe a second one, gravel around
    col = _pavement(col, x, y, fx, fy, p["ballast"] * 0.9, -h - 1.5, h + 1.5, 3.0)
    if street.second_track:
        col = _railway(col, x, y, fx, fy, street, s * 4.3)
    return _railway(col, x, y, fx, fy, street, 0.0)


def _bike_symbols(x, y, fx) -> np.ndarray:
    """Two painted wheels every 20 m on a bike lane."""
    local_y = np.mod(y, 20.0) - 10.0
    paint = np.zeros_like(x)
    for wheel in (-0.45, 0.45):
        r = np.hypot(x, (local_y - wheel) * 0.8)
        paint = np.maximum(paint, band(r, 0.32, 0.08, fx))
    return paint


# ----------------------------------------------------------------------------- buildings
def hit_facades(row: FacadeRow, origin: np.ndarray, d: np.ndarray):
    """Distance to the building row along each ray (inf where missed), plus the hit's
    position along the row, its height and the segment index (only rays heading
    towards the row are traced; the others get t = inf)."""
    n = len(d)
    t, y, z = np.full(n, np.inf, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
    seg = np.zeros(n, np.int64)
    towards = np.flatnonzero(d[:, 0] * (row.plane_x - origin[0]) > 1e-6)
    dt = d[towards]
    tt = (row.plane_x - origin[0]) / dt[:, 0]
    yy, zz = origin[1] + tt * dt[:, 1], origin[2] + tt * dt[:, 2]
    ss = np.clip(np.searchsorted(row.edges, yy) - 1, 0, len(row.heights) - 1)
    ok = (yy > row.edges[0]) & (yy < row.edges[-1]) & (zz >= 0) & (zz <= row.heights[ss])
    t[towards] = np.where(ok, tt, np.inf)
    y[towards], z[towards], seg[towards] = yy, zz, ss
    return t, y, z, seg


def facade_colour(row: FacadeRow, u, z, seg, t, footprint, lit_rate: float):
    """Wall colour with windows (glass by day, some lit at night) and a darker shop floor."""
    wall = row.colours[seg] * (0.85 + 0.15 * hash01(seg.astype(np.float32), 3.0))[:, None]
    left = u - row.edges[seg]
    width = row.edges[seg + 1] - row.edges[seg]
    step = row.window_step[seg]
    column = np.floor(left / step)
    floor = np.floor((z - 0.4) / 3.2)
    in_cell = (np.mod(left, step) / step > 0.28) & (np.mod(left, step) / step < 0.72) & (np.mod(z - 0.4, 3.2) > 1.0) & (np.mod(z - 0.4, 3.2) < 2.6)
    window = in_cell & (z > 3.4) & (z < row.heights[seg] - 0.6) & (left > 0.8) & (left < width - 0.8)
    cover = window * np.clip(1.5 - footprint / step, 0.3, 1.0)  # far windows blur into the wall
    glass = np.array([0.22, 0.28, 0.36], np.float32)
    col = lerp(wall, glass, cover.astype(np.float32))
    col = np.where((z < 3.0)[:, None], wall * 0.55, col)  # shop floor
    col = np.where((z > row.heights[seg] - 0.5)[:, None], wall * 0.7, col)  # cornice
    lit = window & (hash01(column + seg * 31.0, floor) < lit_rate)
    emissive = np.where(lit[:, None], np.array([1.0, 0.8, 0.45], np.float32) * 0.9, 0.0).astype(np.float32)
    return col.astype(np.float32), emissive


# ----------------------------------------------------------------------------- tunnel
def hit_tunnel(tunnel: Tunnel, origin: np.ndarray, d: np.ndarray):
    """Distance to the tunnel wall along each ray from inside it (inf where the ray
    leaves through an end), and the hit point."""
    ox, oz = origin[0], origin[2] - tunnel.centre_z
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (ox * d[:, 0] + oz * d[:, 2])
    c = ox**2 + oz**2 - tunnel.radius**2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0))) / (2 * a)
    x, y, z = origin[0] + t * d[:, 0], origin[1] + t * d[:, 1], origin[2] + t * d[:, 2]
    ok = (a > 1e-8) & (z >= 0) & (y < tunnel.ahead) & (y > -tunnel.back)
    return np.where(ok, t, np.inf), x, y, z


def tunnel_colour(tunnel: Tunnel, x, y, z, fy):
    """Tiled lower walls, sooty vault, two rows of lamps along the ceiling."""
    angle = np.arctan2(x, z - tunnel.centre_z)  # 0 at the crown
    col = tunnel.wall_colour * (0.55 + 0.45 * (z < 2.8))[:, None]
    col = col * (1 - 0.3 * periodic(y, 2.5, 0.06, fy))[:, None]  # panel seams
    lamp_rows = np.minimum(np.abs(angle - 0.55), np.abs(angle + 0.55)) < 0.07
    lamps = lamp_rows * periodic(y, 8.0, 0.3, fy)
    emissive = lamps[:, None] * tunnel.lamp_colour[None, :] * 1.2
    return col.astype(np.float32), emissive.astype(np.float32)


# ----------------------------------------------------------------------------- trace
def trace(street: Street, origin: np.ndarray, d: np.ndarray, pixel_angle: float, lit_rate: float) -> Frame:
    """Cast one ray per pixel against ground, building rows and tunnel; shade the nearest."""
    n = len(d)
    frame = Frame(np.zeros((n, 3), np.float32), np.zeros((n, 3), np.float32), np.full(n, FAR, np.float32),
                  np.full(n, SKY, np.int8), np.zeros(n, bool))
    with np.errstate(divide="ignore"):
        t_ground = np.where(d[:, 2] < -1e-4, origin[2] / -d[:, 2], np.inf)
    best = np.minimum(t_ground, FAR)
    hits = []
    for row in street.facades:
        t, u, z, seg = hit_facades(row, origin, d)
        if street.tunnel is not None:  # no buildings inside the mountain
            t = np.where((u > -street.tunnel.back) & (u < street.tunnel.ahead), np.inf, t)
        hits.append((row, t, u, z, seg))
        best = np.minimum(best, t)
    t_tunnel = np.full(n, np.inf)
    if street.tunnel is not None:
        t_tunnel, tx, ty, tz = hit_tunnel(street.tunnel, origin, d)
        best = np.minimum(best, t_tunnel)

    ground = (t_ground <= best) & (t_ground < FAR)
    if ground.any():
        t = t_ground[ground]
        gx, gy = origin[0] + t * d[ground, 0], origin[1] + t * d[ground, 1]
        fx = t * pixel_angle
        fy = fx / np.maximum(-d[ground, 2], 1e-3)  # grazing view stretches the footprint along the ray
        frame.albedo[ground] = ground_albedo(street, gx, gy, fx, fy)
        frame.depth[ground], frame.kind[ground] = t, GROUND
        if street.tunnel is not None:
            frame.indoor[ground] = (gy < street.tunnel.ahead) & (gy > -street.tunnel.back)
    for row, t, u, z, seg in hits:
        m = (t <= best) & np.isfinite(t)
        if m.any():
            col, glow = facade_colour(row, u[m], z[m], seg[m], t[m], t[m] * pixel_angle, lit_rate)
            frame.albedo[m], frame.emissive[m] = col, glow
            frame.depth[m], frame.kind[m] = t[m], FACADE
    if street.tunnel is not None:
        m = (t_tunnel <= best) & np.isfinite(t_tunnel)
        if m.any():
            col, glow = tunnel_colour(street.tunnel, tx[m], ty[m], tz[m], t_tunnel[m] * pixel_angle)
            frame.albedo[m], frame.emissive[m] = col, glow
            frame.depth[m], frame.kind[m], frame.indoor[m] = t_tunnel[m], TUNNEL, True
    return frame
