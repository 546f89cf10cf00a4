"""Cameras of the street renderer: one viewing ray per pixel, and world points to pixels.

World frame: x across the road (right), y along the road (forward), z up, metres; the
ground is z = 0. A pinhole camera makes ordinary photos; an equirectangular camera makes
360-degree panoramas, whose straight lines (horizon, kerbs, rooflines) bend into curves
once the camera is tilted - the cue that tells a panorama apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation (radians): yaw about z (0 = looking along +y, positive
    turns right), then pitch about the camera's x (positive looks up), then roll."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    yaw_m = np.array([[cy, sy, 0], [-sy, cy, 0], [0, 0, 1]])
    pitch_m = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    roll_m = np.array([[cr, 0, sr], [0, 1, 0], [-sr, 0, cr]])
    return yaw_m @ pitch_m @ roll_m


@dataclass
class Camera:
    """A camera at `position` with orientation `rot` (camera-to-world).

    kind "pinhole" uses `hfov` (radians, horizontal); kind "equirect" spans 360 x 180
    degrees over the image, so its width should be twice its height.
    """

    kind: str
    height: int
    width: int
    position: np.ndarray
    rot: np.ndarray
    hfov: float = 1.4

    @property
    def focal(self) -> float:
        """Pinhole focal length in pixels."""
        return (self.width / 2) / np.tan(self.hfov / 2)

    def local_rays(self) -> np.ndarray:
        """Unit ray directions in the camera frame, [H*W, 3] (x right, y forward, z up)."""
        h, w = self.height, self.width
        col = np.arange(w, dtype=np.float32) + 0.5
        row = np.arange(h, dtype=np.float32) + 0.5
        if self.kind == "equirect":
            azimuth = (col / w * 2 - 1) * np.pi
            elevation = (0.5 - row / h) * np.pi
            az, el = np.meshgrid(azimuth, elevation)
            d = np.stack([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)], -1)
        else:
            x, z = np.meshgrid((col - w / 2) / self.focal, (h / 2 - row) / self.focal)
            d = np.stack([x, np.ones_like(x), z], -1)
            d /= np.linalg.norm(d, axis=-1, keepdims=True)
        return d.reshape(-1, 3).astype(np.float32)

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """(world ray directions [H*W, 3], camera-frame directions [H*W, 3])."""
        local = self.local_rays()
        return (local @ self.rot.T.astype(np.float32)), local

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points [n, 3] -> (column, row, pixels per metre at that distance); points
        behind a pinhole camera get NaN."""
        rel = (np.asarray(points, np.float64) - self.position) @ self.rot  # world -> camera frame
        dist = np.linalg.norm(rel, axis=1)
        if self.kind == "equirect":
            azimuth = np.arctan2(rel[:, 0], rel[:, 1])
            elevation = np.arcsin(np.clip(rel[:, 2] / np.maximum(dist, 1e-6), -1, 1))
            col = (azimuth / np.pi + 1) / 2 * self.width
            row = (0.5 - elevation / np.pi) * self.height
            scale = (self.width / (2 * np.pi)) / np.maximum(dist, 1e-6)
            return col, row, scale
        depth = np.where(rel[:, 1] > 0.3, rel[:, 1], np.nan)
        col = self.width / 2 + self.focal * rel[:, 0] / depth
        row = self.height / 2 - self.focal * rel[:, 2] / depth
        return col, row, self.focal / depth
