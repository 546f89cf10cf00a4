"""Props standing on the ground (trees, street lamps, parked cars, catenary poles), drawn
as camera-facing shapes in screen space with a depth test against the ray-cast frame.

They are nuisance: they move, occlude and recolour parts of the picture without saying
anything about the labels.
"""

from __future__ import annotations

import numpy as np

from clipadapt.synthetic.camera import Camera
from clipadapt.synthetic.layout import Prop
from clipadapt.synthetic.surfaces import PROP, Frame, hash01


class Canvas:
    """2-D views [H, W, ...] of a Frame's flat buffers, with depth-tested painting."""

    def __init__(self, frame: Frame, height: int, width: int):
        self.h, self.w = height, width
        self.albedo = frame.albedo.reshape(height, width, 3)
        self.emissive = frame.emissive.reshape(height, width, 3)
        self.depth = frame.depth.reshape(height, width)
        self.kind = frame.kind.reshape(height, width)
        self.indoor = frame.indoor.reshape(height, width)

    def _box(self, c0: float, c1: float, r0: float, r1: float):
        x0, x1 = max(int(np.floor(c0)), 0), min(int(np.ceil(c1)), self.w)
        y0, y1 = max(int(np.floor(r0)), 0), min(int(np.ceil(r1)), self.h)
        return (slice(y0, y1), slice(x0, x1)) if x1 > x0 and y1 > y0 else None

    def paint(self, box, mask: np.ndarray, dist: float, colour, emissive=None, indoor: bool = False) -> None:
        """Paint `colour` ([3] or [h, w, 3]) where `mask` is set and the prop is nearer."""
        mask = mask & (self.depth[box] >= dist)  # >= lets a prop paint over its own parts
        if not mask.any():
            return
        colour = np.broadcast_to(np.asarray(colour, np.float32), mask.shape + (3,))
        self.albedo[box][mask] = colour[mask]
        self.emissive[box][mask] = 0.0 if emissive is None else np.asarray(emissive, np.float32)
        self.depth[box][mask] = dist
        self.kind[box][mask] = PROP
        self.indoor[box][mask] = indoor

    def rect(self, c0, c1, r0, r1, dist, colour, **kw) -> None:
        # a rectangle at least one pixel wide, so thin poles do not vanish
        if c1 - c0 < 1:
            mid = (c0 + c1) / 2
            c0, c1 = mid - 0.5, mid + 0.5
        box = self._box(c0, c1, r0, r1)
        if box is not None:
            shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
            self.paint(box, np.ones(shape, bool), dist, colour, **kw)

    def ellipse(self, cc, rc, rx, ry, dist, colour, texture_seed: float = 0.0) -> None:
        box = self._box(cc - rx, cc + rx + 1, rc - ry, rc + ry + 1)
        if box is None:
            return
        rows = np.arange(box[0].start, box[0].stop)[:, None] + 0.5
        cols = np.arange(box[1].start, box[1].stop)[None, :] + 0.5
        mask = ((cols - cc) / max(rx, 0.5)) ** 2 + ((rows - rc) / max(ry, 0.5)) ** 2 <= 1.0
        leaves = 0.75 + 0.5 * hash01(np.floor(cols / 2) + texture_seed, np.floor(rows / 2))  # leafy speckle
        self.paint(box, mask, dist, np.asarray(colour, np.float32) * leaves[..., None])


def draw_props(canvas: Canvas, camera: Camera, props: list[Prop], lamps_on: bool, indoor_y: tuple[float, float] | None) -> None:
    """Draw every prop in front of the camera, far ones first."""
    pos = camera.position
    order = sorted(props, key=lambda p: -np.hypot(p.x - pos[0], p.y - pos[1]))
    for prop in order:
        base = np.array([[prop.x, prop.y, 0.0], [prop.x, prop.y, prop.height]])
        col, row, scale = camera.project(base)
        if not np.all(np.isfinite(col)):
            continue
        dist = float(np.linalg.norm(base[0] - pos))
        if dist < 1.5:
            continue  # a prop in the photographer's face would hide every cue
        indoor = indoor_y is not None and indoor_y[0] < prop.y < indoor_y[1]
        top, foot, s = row[1], row[0], scale[0]
        if prop.kind == "tree":
            trunk = 0.3 * s
            canvas.rect(col[0] - trunk / 2, col[0] + trunk / 2, top + 0.3 * (foot - top), foot, dist, (0.3, 0.22, 0.14))
            canvas.ellipse(col[1], top + 0.3 * (foot - top), prop.width * s, prop.width * 1.1 * s, dist, prop.colour, prop.y)
        elif prop.kind == "lamp":
            canvas.rect(col[0] - 0.09 * s, col[0] + 0.09 * s, top, foot, dist, prop.colour, indoor=indoor)
            glow = np.array([1.0, 0.9, 0.65], np.float32) * 1.3 if lamps_on else None
            canvas.rect(col[1] - 0.4 * s, col[1] + 0.4 * s, top, top + 0.25 * s, dist, (0.8, 0.8, 0.75), emissive=glow)
        elif prop.kind == "pole":
            canvas.rect(col[0] - 0.12 * s, col[0] + 0.12 * s, top, foot, dist, prop.colour)
            canvas.rect(col[0] - 2.5 * s, col[0] + 2.5 * s, top, top + 0.15 * s, dist, prop.colour)
        elif prop.kind == "car":
            half = 0.9 * s
            canvas.rect(col[0] - half, col[0] + half, foot - 0.25 * s, foot + 0.08 * s, dist, (0.05, 0.05, 0.05), indoor=indoor)
            canvas.rect(col[0] - half, col[0] + half, top, foot - 0.2 * s, dist, prop.colour, indoor=indoor)
            canvas.rect(col[0] - 0.75 * half, col[0] + 0.75 * half, top, top + 0.45 * (foot - top), dist, (0.12, 0.14, 0.18), indoor=indoor)
