"""Drawing parts of the synthetic pedestrian crops: the street backdrop, the figure with
its clothes and accessories, and the camera finish (lighting, blur, noise).

Everything is drawn with PIL on a canvas `SUPERSAMPLE` times the output size and box-
reduced at the end, which anti-aliases edges cheaply. Figure geometry is written in
units of the figure's height (`Figure.u`) so every cue keeps its proportions at any
image size. Each attribute is drawn only where it belongs on the body - hat on the
head, bags at the side, boots on the shins, stripes on the torso - so a model that
looks at local patches can find it; everything else (colours, build, pose, position,
backdrop) is random nuisance that carries no label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 2

# Base colours, jittered per draw (so no two garments share an exact colour).
CLOTHES = ((25, 25, 28), (60, 60, 65), (120, 120, 125), (200, 200, 195), (235, 235, 230), (30, 40, 80),
           (60, 90, 150), (110, 30, 35), (180, 40, 40), (40, 80, 50), (100, 110, 60), (190, 160, 110),
           (150, 110, 70), (200, 120, 40), (220, 190, 60), (90, 50, 110), (200, 120, 150), (70, 140, 150))
COATS = ((30, 30, 32), (70, 70, 75), (30, 40, 70), (165, 125, 80), (190, 170, 135), (75, 85, 50), (100, 35, 40))
BAGS = ((20, 20, 22), (80, 50, 30), (140, 95, 55), (170, 40, 40), (225, 220, 210), (40, 60, 110), (90, 90, 95))
BOOTS = ((18, 16, 15), (60, 38, 25), (110, 75, 45), (150, 115, 80), (70, 70, 72))
SHOES = ((20, 20, 20), (235, 235, 235), (90, 60, 40), (110, 110, 115), (40, 60, 120), (170, 50, 50))
HAIR = ((20, 15, 12), (50, 32, 20), (95, 65, 40), (170, 135, 80), (140, 140, 140), (130, 60, 30))
HAIR_P = (0.35, 0.25, 0.15, 0.12, 0.08, 0.05)
STRIPES = ((245, 245, 240), (20, 20, 25), (190, 30, 35), (30, 50, 120), (230, 200, 60))
WALLS = ((150, 75, 60), (170, 165, 155), (120, 120, 118), (200, 190, 170), (80, 90, 100), (140, 150, 135),
         (95, 80, 70), (205, 200, 195))
GROUNDS = ((110, 110, 108), (140, 135, 128), (85, 85, 88), (160, 150, 135), (120, 100, 85))


def jitter(rng: np.random.Generator, base, amount: float = 18) -> tuple[int, int, int]:
    """A base colour moved by up to `amount` per channel, as PIL wants it."""
    c = np.clip(np.asarray(base, np.float64) + rng.uniform(-amount, amount, 3), 0, 255)
    return tuple(int(v) for v in c)


def pick(rng: np.random.Generator, palette, amount: float = 18, p=None) -> tuple[int, int, int]:
    """A jittered colour from `palette` (weights `p`, uniform if None)."""
    return jitter(rng, palette[int(rng.choice(len(palette), p=p))], amount)


def skin_tone(rng: np.random.Generator) -> tuple[int, int, int]:
    """From light to dark skin along one line, with a little jitter."""
    t = rng.uniform()
    return jitter(rng, (238 - 150 * t, 200 - 140 * t, 172 - 130 * t), 10)


def _far_from(rng: np.random.Generator, palette, avoid, min_dist: float = 90.0) -> tuple[int, int, int]:
    """A palette colour that stands out against `avoid` (a stripe must contrast with its
    garment, or the pattern vanishes at low resolution)."""
    for _ in range(8):
        c = pick(rng, palette, 12)
        if np.abs(np.subtract(c, avoid)).sum() >= min_dist:
            return c
    return (255 - avoid[0], 255 - avoid[1], 255 - avoid[2])


# ----------------------------------------------------------------------------- backdrop
def street_backdrop(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A street-ish backdrop: a facade over pavement with windows, doors, shop signs,
    poles and blobs (cars, bushes, other people), lit by a smooth random gradient."""
    ground = int(rng.uniform(0.62, 0.95) * height)
    wall, floor = pick(rng, WALLS, 20), pick(rng, GROUNDS, 15)
    img = Image.new("RGB", (width, height), wall)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, ground, width, height], fill=floor)
    # Windows on a jittered grid: clutter at the scale of body parts.
    cell_w, cell_h = rng.uniform(0.25, 0.6) * width, rng.uniform(0.12, 0.25) * height
    glass = pick(rng, ((40, 50, 60), (90, 110, 130), (170, 180, 190), (30, 30, 30)), 15)
    x0, y0 = rng.uniform(-cell_w, 0), rng.uniform(-cell_h, 0)
    for gy in np.arange(y0, ground - 0.5 * cell_h, cell_h):
        for gx in np.arange(x0, width, cell_w):
            if rng.random() < 0.7:
                box = [gx + 0.15 * cell_w, gy + 0.15 * cell_h, gx + 0.85 * cell_w, gy + 0.8 * cell_h]
                draw.rectangle(box, fill=glass)
    for _ in range(int(rng.integers(0, 4))):  # doors, signs, posters
        w, h = rng.uniform(0.1, 0.5) * width, rng.uniform(0.05, 0.3) * height
        x, y = rng.uniform(-0.2, 1.0) * width, rng.uniform(0.0, 0.9) * ground
        draw.rectangle([x, y, x + w, y + h], fill=pick(rng, CLOTHES + WALLS, 30))
    for _ in range(int(rng.integers(0, 3))):  # poles and bollards
        x, w = rng.uniform(0, width), rng.uniform(0.015, 0.05) * width
        colour = pick(rng, ((40, 40, 40), (120, 120, 120), (60, 80, 60)), 15)
        draw.rectangle([x, rng.uniform(0, 0.6) * height, x + w, height], fill=colour)
    for _ in range(int(rng.integers(0, 3))):  # cars, bushes, passers-by cut by the crop
        cx = rng.choice([rng.uniform(-0.2, 0.15), rng.uniform(0.85, 1.2)]) * width  # at the crop's edges
        cy = rng.uniform(0.3, 1.0) * height
        rx, ry = rng.uniform(0.1, 0.3) * width, rng.uniform(0.05, 0.3) * height
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=pick(rng, CLOTHES + GROUNDS, 25))
    if rng.random() < 0.6:  # kerb line
        y = rng.uniform(ground, height)
        draw.line([(0, y), (width, y + rng.uniform(-0.05, 0.05) * height)], fill=pick(rng, GROUNDS, 30),
                  width=max(1, int(0.012 * height)))
    # Smooth light falloff (sun patches, shade): a tiny random field, upsampled.
    shade = Image.fromarray(rng.uniform(0.75, 1.2, (3, 2)).astype(np.float32), "F")
    shade = shade.resize((width, height), Image.BILINEAR)
    arr = np.asarray(img, np.float32) * np.asarray(shade)[..., None]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img.filter(ImageFilter.BoxBlur(0.5 * SUPERSAMPLE))  # the street is a little out of focus


# ----------------------------------------------------------------------------- figure
@dataclass
class Figure:
    """Where the figure stands and how it is built, in canvas pixels.

    `u` is the figure's height (head top to soles); body offsets are fractions of it.
    `side` mirrors left/right so the hand-bag arm and the stride are not always on the
    same side.
    """

    cx: float
    top: float
    u: float
    side: int
    shoulder: float  # half-widths, fractions of u
    waist: float
    hip: float
    build: float  # limb thickness factor
    legs: tuple[float, float]  # each leg's angle from vertical (radians, outward +)
    arms: tuple[float, float]  # each arm's angle from vertical (outward +)
    elbows: tuple[float, float]  # extra bend at the elbow

    def p(self, dx: float, dy: float) -> tuple[float, float]:
        """Canvas point of body offset (dx, dy) (fractions of u; dx > 0 is the figure's
        `side`)."""
        return self.cx + self.side * dx * self.u, self.top + dy * self.u

    def leg(self, k: int) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """Hip, knee and ankle offsets of leg k (0 = left, 1 = right)."""
        s = -1 if k == 0 else 1
        hip = (s * 0.48 * self.hip, HIP_Y)
        a = self.legs[k]
        knee = (hip[0] + s * np.sin(a) * (KNEE_Y - HIP_Y), KNEE_Y)
        ankle = (knee[0] + s * np.sin(a) * 0.7 * (ANKLE_Y - KNEE_Y), ANKLE_Y)
        return hip, knee, ankle

    def arm(self, k: int) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """Shoulder, elbow and wrist offsets of arm k."""
        s = -1 if k == 0 else 1
        sh = (s * (self.shoulder - 0.022), SHOULDER_Y + 0.015)
        a, b = self.arms[k], self.arms[k] + self.elbows[k]
        elbow = (sh[0] + s * np.sin(a) * 0.17, sh[1] + np.cos(a) * 0.17)
        wrist = (elbow[0] + s * np.sin(b) * 0.16, elbow[1] + np.cos(b) * 0.16)
        return sh, elbow, wrist


HEAD_Y, HEAD_R = 0.068, 0.062  # head centre and radius
SHOULDER_Y, WAIST_Y, HIP_Y, KNEE_Y, ANKLE_Y = 0.165, 0.39, 0.47, 0.70, 0.935


def place_figure(rng: np.random.Generator, width: int, height: int, female: bool, hand_bag: bool) -> Figure:
    """Random scale, position, build and pose. The arm holding a hand bag swings a bit
    further out, so the bag hangs beside the thigh instead of hiding in front of it."""
    # Detector boxes are fairly tight: a little slack around the person, never much.
    u = height * rng.uniform(0.82, 0.94)
    top = rng.uniform(0.2, 0.8) * (height - u)
    cx = width * (0.5 + rng.uniform(-0.06, 0.06))
    build = rng.uniform(0.88, 1.15)
    shoulder = (0.102 if female else 0.118) * build
    # Always three draws, so switching one attribute on leaves every other draw alone.
    arms = [rng.uniform(0.06, 0.22), rng.uniform(0.06, 0.22)]
    bag_arm = rng.uniform(0.22, 0.38)
    if hand_bag:
        arms[1] = bag_arm
    return Figure(cx=cx, top=top, u=u, side=int(rng.choice([-1, 1])), shoulder=shoulder,
                  waist=(0.074 if female else 0.084) * build, hip=(0.104 if female else 0.092) * build, build=build,
                  legs=(rng.uniform(-0.02, 0.14), rng.uniform(-0.02, 0.14)), arms=(arms[0], arms[1]),
                  elbows=(rng.uniform(-0.1, 0.15), rng.uniform(-0.1, 0.15)))


class Pen:
    """Draws in body coordinates of one figure."""

    def __init__(self, draw: ImageDraw.ImageDraw, fig: Figure) -> None:
        self.draw, self.fig = draw, fig

    def polygon(self, pts, fill) -> None:
        self.draw.polygon([self.fig.p(x, y) for x, y in pts], fill=fill)

    def ellipse(self, centre, rx: float, ry: float, fill) -> None:
        x, y = self.fig.p(*centre)
        rx, ry = rx * self.fig.u, ry * self.fig.u
        self.draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=fill)

    def capsule(self, a, b, ra: float, rb: float, fill) -> None:
        """A tapered limb segment from a to b with round ends (radii in units of u)."""
        (ax, ay), (bx, by) = self.fig.p(*a), self.fig.p(*b)
        dx, dy = bx - ax, by - ay
        n = max(np.hypot(dx, dy), 1e-6)
        nx, ny = -dy / n, dx / n
        ra, rb = ra * self.fig.u, rb * self.fig.u
        self.draw.polygon([(ax + nx * ra, ay + ny * ra), (bx + nx * rb, by + ny * rb),
                           (bx - nx * rb, by - ny * rb), (ax - nx * ra, ay - ny * ra)], fill=fill)
        self.draw.ellipse([ax - ra, ay - ra, ax + ra, ay + ra], fill=fill)
        self.draw.ellipse([bx - rb, by - rb, bx + rb, by + rb], fill=fill)


def _lerp(a, b, t: float):
    return a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t


# ----------------------------------------------------------------------------- outfit
@dataclass
class Outfit:
    """The colours and shapes one pedestrian wears; drawn from the labels plus nuisance."""

    skin: tuple
    hair: tuple
    bald: bool
    long_hair: bool
    hair_length: float  # below the chin, fraction of the figure's height
    upper: tuple  # top (or coat) colour
    lower: tuple  # trousers / shorts / skirt colour
    stripe: tuple
    stripe_period: float
    legwear: tuple  # bare legs, or tights under a skirt
    shoes: tuple
    boots: tuple
    boot_top: float  # 0 = at the knee, 1 = at the ankle
    bag: tuple
    pack: tuple
    hat: tuple
    hat_kind: str
    lenses: tuple
    upper_hem: float
    skirt_hem: float
    skirt_flare: float
    coat_hem: float


def choose_outfit(rng: np.random.Generator, labels: dict[str, int]) -> Outfit:
    """Colours and cut of everything worn. Only shapes and places carry the labels; the
    colours are random, so a model cannot learn an attribute from a colour alone."""
    # Every draw happens whatever the labels (no short-circuits), so the same rng state
    # with one attribute switched gives the same person apart from that attribute.
    female = bool(labels["Female"])
    skin, hair = skin_tone(rng), pick(rng, HAIR, 12, p=HAIR_P)
    coat, top = pick(rng, COATS, 15), pick(rng, CLOTHES, 22)
    upper = coat if labels["LongCoat"] else top
    dress, bottom = rng.random() < 0.35, pick(rng, CLOTHES, 22)
    lower = upper if labels["Skirt&Dress"] and dress else bottom  # a dress: one colour top and bottom
    tights, bald = rng.random() < 0.25, rng.random() < 0.06
    tights_colour = pick(rng, ((25, 25, 28), (60, 45, 40), (120, 100, 90)), 10)
    return Outfit(
        skin=skin, hair=hair, bald=not female and bald,
        long_hair=rng.random() < (0.82 if female else 0.07), hair_length=rng.uniform(0.06, 0.17),
        upper=upper, lower=lower,
        stripe=_far_from(rng, STRIPES, upper), stripe_period=rng.uniform(0.032, 0.048),
        legwear=tights_colour if labels["Skirt&Dress"] and tights else skin,
        shoes=pick(rng, SHOES, 15), boots=pick(rng, BOOTS, 12),
        boot_top=rng.uniform(0.0, 0.3), bag=pick(rng, BAGS, 15), pack=pick(rng, BAGS + CLOTHES[:8], 15),
        hat=_far_from(rng, CLOTHES, hair, 110), hat_kind=str(rng.choice(["cap", "brim", "beanie"])),
        lenses=jitter(rng, (30, 30, 35), 15), upper_hem=rng.uniform(0.44, 0.49), skirt_hem=rng.uniform(0.6, 0.8),
        skirt_flare=rng.uniform(1.15, 1.6), coat_hem=rng.uniform(0.7, 0.8),
    )


def draw_pedestrian(draw: ImageDraw.ImageDraw, fig: Figure, labels: dict[str, int], wear: Outfit) -> None:
    """Draw the figure back to front: hair and backpack behind the body, legs and the
    lower garment, the torso with its stripes, the arms and the hand bag, the head with
    glasses and hat."""
    pen = Pen(draw, fig)
    b = fig.build
    if wear.long_hair and not wear.bald:  # hair down the back, seen beside the neck
        length = HEAD_Y + HEAD_R + wear.hair_length
        pen.polygon([(-HEAD_R * 1.05, HEAD_Y), (HEAD_R * 1.05, HEAD_Y), (HEAD_R * 1.3, length),
                     (-HEAD_R * 1.3, length)], wear.hair)
    if labels["Backpack"]:  # the pack body sticks out on both sides and over the shoulders
        w = fig.shoulder + 0.035
        pen.polygon([(-w + 0.03, SHOULDER_Y - 0.075), (w - 0.03, SHOULDER_Y - 0.075), (w, SHOULDER_Y - 0.02),
                     (w + 0.01, WAIST_Y + 0.02), (-w - 0.01, WAIST_Y + 0.02), (-w, SHOULDER_Y - 0.02)], wear.pack)
    _legs(pen, fig, labels, wear, b)
    _torso(pen, fig, labels, wear)
    _arms(pen, fig, labels, wear, b)
    _head(pen, labels, wear)


def _legs(pen: Pen, fig: Figure, labels, wear: Outfit, b: float) -> None:
    trousers, shorts, skirt = labels["Trousers"], labels["Shorts"], labels["Skirt&Dress"]
    for k in (0, 1):
        hip, knee, ankle = fig.leg(k)
        s = -1 if k == 0 else 1
        thick = 0.047 * b if trousers else 0.04 * b  # trousers are looser than bare legs
        pen.capsule(hip, knee, thick, thick * 0.8, wear.lower if trousers else wear.legwear)
        pen.capsule(knee, ankle, thick * 0.8, thick * 0.7, wear.lower if trousers else wear.legwear)
        if shorts:  # shorts end above the knee, bare shins below
            pen.capsule(hip, _lerp(hip, knee, 0.55), 0.052 * b, 0.05 * b, wear.lower)
        foot = (ankle[0] + s * 0.012, ankle[1] + 0.035)
        if labels["boots"]:  # a shaft wider than the shin, from the foot up the calf
            pen.capsule(_lerp(knee, ankle, wear.boot_top), ankle, 0.04 * b, 0.038 * b, wear.boots)
            pen.ellipse(foot, 0.04, 0.027, wear.boots)
        else:
            pen.ellipse(foot, 0.034, 0.02, wear.shoes)
    if trousers or shorts:  # the seat, joining both legs at the top
        pen.polygon([(-fig.waist, WAIST_Y), (fig.waist, WAIST_Y), (fig.hip, HIP_Y + 0.02), (0.0, HIP_Y + 0.06),
                     (-fig.hip, HIP_Y + 0.02)], wear.lower)
    if skirt:  # a flared trapezoid over both thighs
        flare = fig.hip * wear.skirt_flare
        pen.polygon([(-fig.waist, WAIST_Y), (fig.waist, WAIST_Y), (fig.hip, HIP_Y),
                     (flare, wear.skirt_hem), (-flare, wear.skirt_hem), (-fig.hip, HIP_Y)], wear.lower)


def _torso(pen: Pen, fig: Figure, labels, wear: Outfit) -> None:
    pen.capsule((0.0, HEAD_Y), (0.0, SHOULDER_Y), 0.022, 0.024, wear.skin)  # neck
    if labels["LongCoat"]:  # down to the knees, widening, over whatever is worn below
        ys = [SHOULDER_Y, WAIST_Y, HIP_Y, wear.coat_hem]
        xs = [fig.shoulder + 0.006, fig.waist + 0.014, fig.hip + 0.016, fig.hip * 1.4]
    else:
        ys = [SHOULDER_Y, WAIST_Y, wear.upper_hem]
        xs = [fig.shoulder, fig.waist, fig.hip * 0.98]
    pen.polygon([(-0.03, SHOULDER_Y - 0.014), (0.03, SHOULDER_Y - 0.014)] + list(zip(xs, ys))
                + [(-x, y) for x, y in zip(xs[::-1], ys[::-1])], wear.upper)
    if labels["LongCoat"]:  # the front opening, a darker line down the middle
        dark = tuple(int(c * 0.55) for c in wear.upper)
        hem = wear.coat_hem
        pen.polygon([(-0.006, SHOULDER_Y), (0.006, SHOULDER_Y), (0.006, hem), (-0.006, hem)], dark)
    if labels["UpperStride"]:  # horizontal bands clipped to the garment's outline
        period = wear.stripe_period
        end = min(ys[-1], WAIST_Y + 0.06)
        for y0 in np.arange(SHOULDER_Y + 0.02, end - 0.3 * period, period):
            y1 = min(y0 + 0.5 * period, end)
            x0, x1 = float(np.interp(y0, ys, xs)), float(np.interp(y1, ys, xs))
            pen.polygon([(-x0, y0), (x0, y0), (x1, y1), (-x1, y1)], wear.stripe)
    if labels["Backpack"]:  # shoulder straps across the chest
        strap = tuple(int(c * 0.7) for c in wear.pack)
        for s in (-1, 1):
            x = s * (fig.shoulder - 0.04)
            pen.polygon([(x - 0.015, SHOULDER_Y - 0.012), (x + 0.015, SHOULDER_Y - 0.012),
                         (x + 0.015 + s * 0.01, SHOULDER_Y + 0.15), (x - 0.015 + s * 0.01, SHOULDER_Y + 0.15)], strap)


def _arms(pen: Pen, fig: Figure, labels, wear: Outfit, b: float) -> None:
    for k in (0, 1):
        shoulder, elbow, wrist = fig.arm(k)
        if labels["ShortSleeve"]:  # bare from just above the elbow
            pen.capsule(shoulder, elbow, 0.03 * b, 0.026 * b, wear.skin)
            pen.capsule(elbow, wrist, 0.026 * b, 0.022 * b, wear.skin)
            pen.capsule(shoulder, _lerp(shoulder, elbow, 0.5), 0.037 * b, 0.035 * b, wear.upper)
        else:
            pen.capsule(shoulder, elbow, 0.034 * b, 0.03 * b, wear.upper)
            pen.capsule(elbow, wrist, 0.03 * b, 0.026 * b, wear.upper)
        pen.ellipse((wrist[0], wrist[1] + 0.018), 0.022, 0.026, wear.skin)
        if k == 1 and labels["HandBag"]:  # hangs from the hand beside the thigh
            top = wrist[1] + 0.045
            cx = wrist[0] + 0.01
            w, h = 0.065 * b, 0.11 * b
            pen.capsule((wrist[0], wrist[1] + 0.02), (cx - w * 0.6, top), 0.006, 0.006, wear.bag)
            pen.capsule((wrist[0], wrist[1] + 0.02), (cx + w * 0.6, top), 0.006, 0.006, wear.bag)
            pen.polygon([(cx - w * 0.85, top), (cx + w * 0.85, top), (cx + w, top + h), (cx - w, top + h)], wear.bag)


def _head(pen: Pen, labels, wear: Outfit) -> None:
    r = HEAD_R
    if wear.bald:
        pen.ellipse((0.0, HEAD_Y), r * 0.86, r, wear.skin)
    else:  # hair all round, the face below a fringe
        pen.ellipse((0.0, HEAD_Y - 0.006), r * 0.94 if wear.long_hair else r * 0.88, r * 1.0, wear.hair)
        pen.ellipse((0.0, HEAD_Y + 0.012), r * 0.74, r * 0.84, wear.skin)
    if labels["Hat"]:
        top = HEAD_Y - r * 1.4  # a hat sits on the hair, so it raises the head's outline
        if wear.hat_kind == "beanie":  # a dome pulled down to the brows
            pen.ellipse((0.0, HEAD_Y - r * 0.75), r * 1.02, r * 0.6, wear.hat)
        else:
            brow = HEAD_Y - r * 0.3
            pen.polygon([(-r * 0.95, brow), (-r * 0.8, top), (r * 0.8, top), (r * 0.95, brow)], wear.hat)
            brim = 1.7 if wear.hat_kind == "brim" else 1.25
            pen.ellipse((0.0, HEAD_Y - r * 0.32), r * brim, r * 0.24, wear.hat)
    if labels["Glasses"]:  # last: two dark lenses and a bridge, below any brim
        y = HEAD_Y + 0.006
        for s in (-1, 1):
            pen.ellipse((s * r * 0.36, y), r * 0.36, r * 0.28, wear.lenses)
        pen.polygon([(-r * 0.4, y - r * 0.08), (r * 0.4, y - r * 0.08), (r * 0.4, y + r * 0.05),
                     (-r * 0.4, y + r * 0.05)], wear.lenses)


# ----------------------------------------------------------------------------- camera
def camera_finish(img: Image.Image, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Supersampled canvas -> output size, then what surveillance cameras add: low
    resolution now and then, blur, exposure and colour cast, sensor noise."""
    img = img.resize((width, height), Image.BOX)
    f = min(rng.uniform(1.3, 2.2), height / 40)  # never below 40 px: the cues must survive
    if rng.random() < 0.3 and f > 1.15:  # an upscaled small crop, as from a far-away person
        small = img.resize((max(8, int(width / f)), max(16, int(height / f))), Image.BILINEAR)
        img = small.resize((width, height), Image.BILINEAR)
    radius = rng.uniform(0.0, 0.8) * height / 128
    if radius > 0.15:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    arr = np.asarray(img, np.float32)
    gain = rng.uniform(0.7, 1.2) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    arr = arr * gain + rng.uniform(-12, 12)
    arr += rng.normal(0.0, rng.uniform(1.0, 6.0), arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
