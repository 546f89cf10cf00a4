"""Drawing parts of the synthetic fine-grained songbirds (see `finegrained`).

Every bird is drawn in one canonical frame - facing right, y pointing down, the body
ellipse centred on the origin with a half-length of one unit - and `Pose` maps that
frame to pixels (scale, small rotation, mirror, shift). Shapes are numpy polygons drawn
with PIL on a canvas `SUPERSAMPLE` times larger than the output, then reduced, which
anti-aliases the small cue shapes cheaply.

The split of work:
    Traits                       what makes a class (beak, crest, eye ring, ...)
    Pose / place_bird            where the bird goes and how it is turned
    paint_background             gradient + foliage, sky, water or ground clutter
    paint_bird                   the shared body plan, then the class cues
    paint_clutter                berries and petals in the cue colours, occluding leaves
    camera_finish                light, colour cast, blur and sensor noise
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 2  # draw at 2x and reduce: enough anti-aliasing for 2-3 px cues, still fast

# Cue colours (RGB in [0, 1]). Each is shared by two classes whose cues sit in different
# places (red crest / red throat, white eye ring / white wing bars, yellow bill / yellow
# rump, black mask / black breast spots), and also scattered in the background as
# berries and petals, so how MUCH of a colour an image holds says little about the class.
RED = (0.85, 0.12, 0.10)
WHITE = (0.95, 0.95, 0.92)
YELLOW = (0.96, 0.82, 0.12)
BLACK = (0.07, 0.06, 0.06)
CUE_COLOURS = (RED, WHITE, YELLOW, BLACK)

# Plumage shared by every class (a brown, olive, grey, buff or slate songbird), so the
# body colour, which covers most of the bird, carries no label.
PLUMAGE = np.array([
    (0.52, 0.40, 0.28), (0.47, 0.47, 0.30), (0.50, 0.50, 0.52), (0.66, 0.56, 0.42), (0.40, 0.43, 0.48),
])
HORN = (0.28, 0.25, 0.22)  # the ordinary dark-horn beak and legs


@dataclass(frozen=True)
class Traits:
    """What one class looks like: a beak shape and colour plus at most one marking.

    beak: "conical" (finch), "thin" (warbler), "straight" (thrush, flycatcher),
        "hooked" (shrike) or "curved" (long, decurved: wren).
    """

    beak: str = "thin"
    beak_colour: tuple = HORN
    crest: tuple | None = None  # colour of a crown tuft
    throat: tuple | None = None  # colour of a throat patch
    eye_ring: bool = False
    wing_bars: bool = False
    rump: tuple | None = None  # colour of a patch above the tail
    spots: bool = False  # dark spots on the breast
    mask: bool = False  # black band through the eye
    forked_tail: bool = False
    plumage: tuple | None = None  # a fixed body colour; None draws one from the shared PLUMAGE


def rgb255(colour) -> tuple[int, int, int]:
    """[0, 1] float RGB -> the 0-255 int triple PIL wants."""
    return tuple(int(np.clip(c, 0, 1) * 255 + 0.5) for c in colour)


def ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 20) -> np.ndarray:
    """An (n, 2) polygon approximating an ellipse turned by `angle` radians."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


@dataclass(frozen=True)
class Pose:
    """Canonical bird frame -> canvas pixels: p' = shift + unit * R(angle) * mirror(p)."""

    unit: float  # pixels per canonical unit (the body half-length)
    angle: float  # radians; small, a bird leaning forward or back
    flip: bool  # facing left instead of right
    cx: float
    cy: float

    def apply(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64)
        x = -pts[:, 0] if self.flip else pts[:, 0]
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.stack([self.cx + self.unit * (c * x - s * pts[:, 1]),
                         self.cy + self.unit * (s * x + c * pts[:, 1])], axis=1)


def place_bird(rng: np.random.Generator, canvas: int) -> Pose:
    """A random pose with the bird (about 3.7 x 2.2 units) filling most of the frame;
    a long tail may touch the edge. Kept moderate (small shift and turn) so the cues sit
    in roughly comparable places, as in cropped fine-grained benchmarks."""
    unit = canvas * rng.uniform(0.20, 0.24)
    flip = bool(rng.random() < 0.5)
    # The bird's bounding box is centred near canonical (-0.3, -0.1) (the tail reaches
    # further than the beak); shift so that point lands near the image centre.
    off_x = 0.3 * unit * (-1 if flip else 1)
    return Pose(unit=unit, angle=float(rng.uniform(-0.15, 0.15)), flip=flip,
                cx=canvas / 2 + off_x + rng.uniform(-0.04, 0.04) * canvas,
                cy=canvas / 2 + 0.1 * unit + rng.uniform(-0.04, 0.04) * canvas)


class Painter:
    """Polygon and line drawing in canonical bird units through a `Pose`."""

    def __init__(self, image: Image.Image, pose: Pose):
        self.draw = ImageDraw.Draw(image)
        self.pose = pose

    def poly(self, pts, colour) -> None:
        self.draw.polygon(self.pose.apply(pts).ravel().tolist(), fill=rgb255(colour))

    def line(self, pts, colour, width: float) -> None:
        self.draw.line(self.pose.apply(pts).ravel().tolist(), fill=rgb255(colour),
                       width=max(1, int(round(width * self.pose.unit))), joint="curve")


# ----------------------------------------------------------------------------- background
_SCENES = ("foliage", "sky", "water", "ground")


def _gradient(rng: np.random.Generator, canvas: int, top, bottom) -> np.ndarray:
    """A linear blend from `top` to `bottom` along a random, mostly vertical direction."""
    ang = rng.uniform(-0.6, 0.6)
    yy, xx = np.mgrid[0:canvas, 0:canvas].astype(np.float32) / canvas
    t = np.clip(np.cos(ang) * yy + np.sin(ang) * (xx - 0.5) + rng.uniform(-0.15, 0.15), 0, 1)[..., None]
    return np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t


def paint_background(rng: np.random.Generator, canvas: int) -> Image.Image:
    """A natural-looking backdrop: one of foliage, sky, water or ground, with blobs."""
    scene = _SCENES[int(rng.integers(len(_SCENES)))]

    def jitter(colour, amount=0.08):
        return np.clip(np.asarray(colour) + rng.uniform(-amount, amount, 3), 0, 1)

    if scene == "foliage":
        top, bottom = jitter((0.30, 0.45, 0.22)), jitter((0.18, 0.30, 0.14))
        blob_colours = [(0.22, 0.42, 0.18), (0.35, 0.52, 0.25), (0.15, 0.28, 0.12), (0.45, 0.55, 0.30)]
        n_blobs, blob_size = 14, (0.06, 0.16)
    elif scene == "sky":
        top, bottom = jitter((0.45, 0.62, 0.85)), jitter((0.75, 0.82, 0.90))
        blob_colours = [(0.90, 0.91, 0.93), (0.80, 0.83, 0.88), (0.30, 0.45, 0.25)]
        n_blobs, blob_size = 6, (0.08, 0.22)
    elif scene == "water":
        top, bottom = jitter((0.35, 0.50, 0.58)), jitter((0.20, 0.32, 0.40))
        blob_colours = [(0.45, 0.60, 0.66), (0.25, 0.38, 0.45), (0.55, 0.65, 0.62)]
        n_blobs, blob_size = 10, (0.05, 0.12)
    else:
        top, bottom = jitter((0.55, 0.50, 0.38)), jitter((0.40, 0.34, 0.25))
        blob_colours = [(0.48, 0.42, 0.32), (0.60, 0.56, 0.48), (0.35, 0.40, 0.22)]
        n_blobs, blob_size = 12, (0.03, 0.09)
    image = Image.fromarray((_gradient(rng, canvas, top, bottom) * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(n_blobs // 2, n_blobs + 1))):
        r = rng.uniform(*blob_size) * canvas
        x, y = rng.uniform(0, canvas, 2)
        flat = 0.35 if scene == "water" else rng.uniform(0.5, 1.0)  # ripples are flat
        pts = ellipse(x, y, r, r * flat, rng.uniform(-0.5, 0.5) if scene != "water" else 0.0, n=14)
        colour = jitter(blob_colours[int(rng.integers(len(blob_colours)))], 0.05)
        draw.polygon(pts.ravel().tolist(), fill=rgb255(colour))
    return image


def paint_perch(paint: Painter, rng: np.random.Generator) -> None:
    """A branch under the feet, running out of the frame (most birds perch)."""
    if rng.random() < 0.8:
        y = 0.98
        bark = np.clip(np.array((0.36, 0.27, 0.18)) + rng.uniform(-0.08, 0.08, 3), 0, 1)
        bend = rng.uniform(-0.12, 0.12)
        paint.poly([(-7, y + 7 * bend), (7, y - 7 * bend), (7, y - 7 * bend + 0.22), (-7, y + 7 * bend + 0.22)], bark)


# ----------------------------------------------------------------------------- the bird
def _beak(paint: Painter, traits: Traits, head: tuple[float, float, float], rng: np.random.Generator) -> None:
    hx, hy, hr = head
    bx, by = hx + 0.9 * hr, hy + 0.1 * hr  # the beak base on the front of the head
    colour = np.clip(np.asarray(traits.beak_colour) + rng.uniform(-0.05, 0.05, 3), 0, 1)
    k = rng.uniform(0.9, 1.1)
    if traits.beak == "conical":  # short and deep
        pts = [(bx - 0.05, by - 0.16 * k), (bx + 0.36 * k, by + 0.01), (bx - 0.05, by + 0.15 * k)]
    elif traits.beak == "thin":  # short and fine
        pts = [(bx - 0.05, by - 0.07), (bx + 0.40 * k, by + 0.01), (bx - 0.05, by + 0.07)]
    elif traits.beak == "straight":  # longer, moderately deep
        pts = [(bx - 0.05, by - 0.09), (bx + 0.52 * k, by + 0.02), (bx - 0.05, by + 0.09)]
    elif traits.beak == "hooked":  # stout with a down-turned tip
        pts = [(bx - 0.05, by - 0.13), (bx + 0.32 * k, by - 0.08), (bx + 0.42 * k, by + 0.06),
               (bx + 0.34 * k, by + 0.04), (bx + 0.30 * k, by + 0.08), (bx - 0.05, by + 0.12)]
    else:  # "curved": long and decurved
        t = np.linspace(0, 1, 8)
        length = 0.85 * k
        cx, cy = bx + length * t, by + 0.35 * length * t**2
        half = 0.09 * (1 - t) + 0.015
        pts = np.concatenate([np.stack([cx, cy - half], 1), np.stack([cx, cy + half], 1)[::-1]])
    paint.poly(pts, colour)


def _tail(paint: Painter, traits: Traits, colour, rng: np.random.Generator) -> None:
    droop = rng.uniform(-0.15, 0.25)
    if traits.forked_tail:  # two long streamers with a deep notch
        length = rng.uniform(1.45, 1.7)
        tip = -0.75 - length
        pts = [(-0.7, -0.05), (tip, 0.15 + droop - 0.25), (tip + 0.55, 0.42 + droop),
               (tip, 0.69 + droop + 0.2), (-0.7, 0.32)]
    else:  # a fan with a square or rounded end
        length = rng.uniform(0.9, 1.15)
        tip = -0.75 - length
        pts = [(-0.7, -0.05), (tip, 0.22 + droop), (tip - 0.06, 0.42 + droop), (tip, 0.62 + droop), (-0.7, 0.32)]
    paint.poly(pts, colour)


def paint_bird(paint: Painter, traits: Traits, rng: np.random.Generator) -> None:
    """The shared body plan (tail, legs, body, belly, wing, head, eye, beak), with the
    class's marking drawn where it belongs.

    Within-class variation: plumage colour, head size and height, tail length and droop,
    cue size and tint, and - for every class - a plain crown tuft now and then, so a
    crest outline alone is no clue (only a red crest is).
    """
    # A fixed colour is a palette of one (numpy draws nothing for a choice of one, so
    # the later random numbers, and with them the picture, differ from the shared case).
    palette = PLUMAGE if traits.plumage is None else np.asarray([traits.plumage])
    plumage = np.clip(palette[int(rng.integers(len(palette)))] + rng.uniform(-0.06, 0.06, 3), 0, 1)
    wing = plumage * rng.uniform(0.65, 0.85)
    belly = np.clip(plumage + rng.uniform(0.15, 0.3), 0, 1)
    size = rng.uniform(0.9, 1.1)  # cue size, drawn once so the paired cues match in area

    def tint(colour):  # cue colours vary a little from bird to bird
        return np.clip(np.asarray(colour) + rng.uniform(-0.07, 0.07, 3), 0, 1)

    _tail(paint, traits, wing, rng)
    for lx in (0.05, 0.28):  # legs, down to the perch line
        paint.line([(lx, 0.45), (lx - 0.05, 1.0)], HORN, 0.06)
    tilt = -0.22 + rng.uniform(-0.08, 0.08)
    paint.poly(ellipse(0.0, 0.0, 1.0, 0.62, tilt), plumage)
    paint.poly(ellipse(0.2, 0.24, 0.72, 0.36, tilt), belly)
    if traits.spots:  # breast spots: a loose cluster on the belly
        for _ in range(int(rng.integers(6, 9))):
            sx, sy = rng.uniform(0.15, 0.8), rng.uniform(0.0, 0.32)
            paint.poly(ellipse(sx, sy, 0.055 * size, 0.045 * size, n=8), tint(BLACK))
    paint.poly(ellipse(-0.22, -0.08, 0.74, 0.32, tilt + 0.12), wing)
    if traits.wing_bars:  # two pale bars across the folded wing
        for wx in (-0.3, 0.0):
            paint.line([(wx, -0.3), (wx + 0.1, 0.14)], tint(WHITE), 0.08 * size)
    if traits.rump is not None:  # patch just above the tail base
        paint.poly(ellipse(-0.8, -0.06, 0.2 * size, 0.14 * size, tilt), tint(traits.rump))

    hr = rng.uniform(0.36, 0.42)
    head = (0.85, -0.5 + rng.uniform(-0.06, 0.06), hr)
    hx, hy, _ = head
    if traits.crest is not None or rng.random() < 0.3:  # swept-back crown tuft
        tuft = [(hx - 0.25, hy - 0.25), (hx + 0.12, hy - hr + 0.02), (hx - 0.38 * size, hy - hr - 0.32 * size)]
        paint.poly(tuft, tint(traits.crest) if traits.crest is not None else plumage)
    paint.poly(ellipse(hx, hy, hr, hr), plumage)
    if traits.crest is not None:  # the crown itself is coloured too, as in real crests
        paint.poly(ellipse(hx - 0.05, hy - 0.7 * hr, 0.5 * hr, 0.2 * hr, -0.3), tint(traits.crest))
    if traits.throat is not None:  # below the beak, at the front of the head
        paint.poly(ellipse(hx + 0.22, hy + 0.72 * hr, 0.24 * size, 0.17 * size, -0.5), tint(traits.throat))
    ex, ey = hx + 0.42 * hr, hy - 0.15 * hr
    if traits.mask:  # a black band from the beak through the eye
        paint.poly([(ex - 0.32, ey - 0.03), (ex + 0.24, ey - 0.1 * size), (ex + 0.24, ey + 0.1 * size),
                    (ex - 0.32, ey + 0.13 * size)], tint(BLACK))
    if traits.eye_ring:
        paint.poly(ellipse(ex, ey, 0.15 * size, 0.15 * size, n=14), tint(WHITE))
    paint.poly(ellipse(ex, ey, 0.075, 0.075, n=10), BLACK)
    _beak(paint, traits, head, rng)


# ----------------------------------------------------------------------------- clutter
def paint_clutter(paint_bg: ImageDraw.ImageDraw, rng: np.random.Generator, canvas: int) -> None:
    """Berries and petals in the four cue colours, about the size of a cue, anywhere in
    the frame: a whole-image colour histogram can't tell a red crest from a red berry."""
    for _ in range(int(rng.integers(2, 7))):
        colour = CUE_COLOURS[int(rng.integers(len(CUE_COLOURS)))]
        colour = np.clip(np.asarray(colour) + rng.uniform(-0.07, 0.07, 3), 0, 1)
        x, y = rng.uniform(0, canvas, 2)
        r = rng.uniform(0.015, 0.035) * canvas
        paint_bg.polygon(ellipse(x, y, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, 3), n=10).ravel().tolist(),
                         fill=rgb255(colour))


def paint_occluders(image: Image.Image, rng: np.random.Generator, canvas: int) -> None:
    """Now and then a leaf or two in front of the bird (part of the bird hidden)."""
    if rng.random() < 0.25:
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 3))):
            x, y = rng.uniform(0.05, 0.95, 2) * canvas
            colour = np.clip(np.array((0.22, 0.40, 0.16)) + rng.uniform(-0.08, 0.08, 3), 0, 1)
            pts = ellipse(x, y, rng.uniform(0.06, 0.11) * canvas, rng.uniform(0.025, 0.045) * canvas, rng.uniform(0, 3))
            draw.polygon(pts.ravel().tolist(), fill=rgb255(colour))


# ----------------------------------------------------------------------------- camera
def camera_finish(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Light and sensor: exposure, colour cast, a soft directional light, slight defocus
    now and then, and noise. Applied at output size (cheap)."""
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.7)))
    arr = np.asarray(image, dtype=np.float32) / 255
    h, w = arr.shape[:2]
    gain = rng.uniform(0.75, 1.2) * rng.uniform(0.9, 1.1, 3).astype(np.float32)  # exposure, white balance
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1 + rng.uniform(0, 0.25) * ((np.cos(ang) * (xx / w - 0.5) + np.sin(ang) * (yy / h - 0.5)))
    contrast = rng.uniform(0.85, 1.15)
    arr = (arr - 0.5) * contrast + 0.5
    arr = arr * gain * light[..., None]
    arr += rng.normal(0, rng.uniform(0.005, 0.03), arr.shape).astype(np.float32)
    return Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
