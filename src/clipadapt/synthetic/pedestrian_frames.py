"""Street frames with several pedestrians at known boxes, and tracks: the same person (same
labels, same outfit) in several frames of one clip, as a detector and tracker give them.

A clip is a fixed camera on one street (one backdrop); each of its people walks across it
in a lane of their own, so boxes seldom overlap. From frame to frame a person moves a few
pixels, swings arms and legs a little, grows or shrinks a little, and the light changes.
Some (person, frame) pairs are made hard, so a single frame errs where the track as a
whole does not:
    dim       the box's pixels at 20-35% of their light
    blur      a strong Gaussian blur over the box
    occluded  a car, bush or sign in front of 40-55% of the box
    small     the person far away: a box about 30% of the usual height
Everything else about a person stays as `render_pedestrian` paints it: the painter's
figure, outfit and attribute drawing (`synthetic.pedestrian_parts`) and the PA100K names.

`write_pedestrian_frames(root, ...)` writes
    frames/c000_f00.png ...   the frames (PNG)
    frames.csv                one row per person per frame: path (the frame, relative to
                              root), x, y, w, h (the person's box in pixels), track, clip,
                              frame, hard ("" or the kind above), split (train / test, by
                              clip, so no person is in both), then one 0/1 column per
                              attribute in PEDESTRIAN_ATTRIBUTES order
    crops/c000_f00_t0000.png  with crops=True: each row's box cut from its frame and saved
    crops.csv                 with crops=True: the same rows with img_path (the crop) in
                              place of path and the box columns: a plain manifest to train on
    attributes.json           {"attributes": [{"name", "sentence"}, ...]}
Deterministic for a seed; a folder finished with the same options is returned untouched.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clipadapt.data.boxes import crop_box
from clipadapt.errors import ClipAdaptError
from clipadapt.io import atomic_write, write_json, write_text
from clipadapt.synthetic.pedestrian_parts import (
    CLOTHES, GROUNDS, SUPERSAMPLE, Outfit, choose_outfit, draw_pedestrian, pick, place_figure, street_backdrop,
)
from clipadapt.synthetic.pedestrians import PEDESTRIAN_ATTRIBUTES, PEDESTRIAN_SENTENCES, sample_pedestrian_labels

HARD_KINDS = ("dim", "blur", "occluded", "small")
SPLITS = ("train", "test")
FRAMES_VERSION = 1  # bump when the pictures change, so finished folders are re-rendered
# the painter's figure fills 82-94% of its crop's height; a box leaves the same slack
FIGURE_SHARE = 0.88


@dataclass(frozen=True)
class Person:
    """One track: who (labels, outfit, build) and how they move through the clip."""

    labels: dict
    outfit: Outfit
    figure: object  # the painter's Figure at unit size: build, side, pose; moved and scaled per frame
    height: float  # box height in output pixels
    x0: float  # box centre at frame 0
    speed: float  # pixels per frame
    feet: float  # where the box's bottom rests


def _people(rng: np.random.Generator, count: int, width: int, height: int) -> list[Person]:
    """`count` people in lanes of the frame's width, each with their own labels and outfit."""
    lane = width / count
    people = []
    for k in range(count):
        labels = sample_pedestrian_labels(rng)
        figure = place_figure(rng, 100, 100, bool(labels["Female"]), bool(labels["HandBag"]))
        box_h = rng.uniform(0.62, 0.82) * height
        box_h = min(box_h, 1.8 * lane)  # a box of width h/2 fits its lane
        x0 = (k + rng.uniform(0.35, 0.65)) * lane
        people.append(Person(labels, choose_outfit(rng, labels), figure, box_h, x0, rng.uniform(-3.0, 3.0),
                             rng.uniform(0.9, 0.98) * height))
    return people


def _box(person: Person, frame: int, scale: float, rng: np.random.Generator, width: int, height: int) -> tuple:
    """The whole-pixel box (x, y, w, h) of `person` in `frame`, kept inside the frame."""
    h = min(int(round(person.height * scale * rng.uniform(0.96, 1.04))), height)
    w = max(1, int(round(h / 2)))
    cx = person.x0 + person.speed * frame + rng.uniform(-1.5, 1.5)
    bottom = person.feet - (1 - scale) * 0.25 * height + rng.uniform(-2, 2)  # farther away: higher up
    x = min(max(int(round(cx - w / 2)), 0), width - w)
    y = min(max(int(round(bottom - h)), 0), height - h)
    return x, y, w, h


def _draw(canvas: Image.Image, person: Person, box: tuple, rng: np.random.Generator) -> None:
    """The person standing in `box` on the supersampled canvas, pose jittered a little."""
    x, y, w, h = (v * SUPERSAMPLE for v in box)
    base = person.figure
    u = h * FIGURE_SHARE
    swing = rng.uniform(-0.05, 0.05, 4)
    figure = replace(base, cx=x + w / 2, top=y + (h - u) / 2, u=u,
                     legs=(base.legs[0] + swing[0], base.legs[1] + swing[1]),
                     arms=(max(0.02, base.arms[0] + swing[2]), max(0.02, base.arms[1] + swing[3])))
    draw_pedestrian(ImageDraw.Draw(canvas), figure, person.labels, person.outfit)


def _occlude(canvas: Image.Image, box: tuple, rng: np.random.Generator) -> None:
    """Something in front of 40-55% of the box: a car or bush from below, or a sign from a side."""
    x, y, w, h = (v * SUPERSAMPLE for v in box)
    draw = ImageDraw.Draw(canvas)
    share = rng.uniform(0.4, 0.55)
    if rng.random() < 0.6:
        top = y + h * (1 - share)
        draw.rounded_rectangle([x - 0.3 * w, top, x + 1.3 * w, y + h + 2], radius=0.2 * w,
                               fill=pick(rng, CLOTHES + GROUNDS, 25))
    else:
        left = x + w * (1 - share) if rng.random() < 0.5 else x - 0.1 * w
        draw.rectangle([left, y - 0.1 * h, left + share * w + 0.1 * w, y + 0.9 * h], fill=pick(rng, CLOTHES, 25))


def _region_effect(pixels: np.ndarray, box: tuple, kind: str, rng: np.random.Generator) -> None:
    """Dim or blur the box's pixels in place (output resolution)."""
    x, y, w, h = box
    patch = pixels[y:y + h, x:x + w]
    if kind == "dim":
        patch *= rng.uniform(0.2, 0.35)
    elif kind == "blur":
        image = Image.fromarray(np.clip(patch, 0, 255).astype(np.uint8), "RGB")
        radius = rng.uniform(0.08, 0.12) * h
        patch[...] = np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), np.float32)


def render_clip(seed, people_count: int = 3, frames: int = 6, size: tuple[int, int] = (256, 160),
                hard_fraction: float = 0.4) -> tuple[list[Image.Image], list[dict]]:
    """One clip: `frames` RGB frames of `size` (width, height) and one record per person
    per frame: frame, track (0..people_count-1, in the clip), box (x, y, w, h), hard
    ("" or one of HARD_KINDS) and labels. `seed`: anything numpy's default_rng takes."""
    width, height = size
    rng = np.random.default_rng(seed)
    people = _people(rng, people_count, width, height)
    backdrop = street_backdrop(rng, width * SUPERSAMPLE, height * SUPERSAMPLE)
    images, records = [], []
    for f in range(frames):
        canvas = backdrop.copy()
        found = []
        for t, person in enumerate(people):
            hard = str(rng.choice(HARD_KINDS)) if rng.random() < hard_fraction else ""
            box = _box(person, f, rng.uniform(0.26, 0.32) if hard == "small" else 1.0, rng, width, height)
            found.append((t, box, hard))
        # farther (smaller) people first, so nearer ones stand in front
        for t, box, hard in sorted(found, key=lambda item: item[1][3]):
            _draw(canvas, people[t], box, rng)
            if hard == "occluded":
                _occlude(canvas, box, rng)
        pixels = np.asarray(canvas.resize((width, height), Image.BOX), np.float32).copy()
        for t, box, hard in found:
            _region_effect(pixels, box, hard, rng)
        # the light of the whole frame drifts, the sensor adds noise
        pixels = pixels * rng.uniform(0.8, 1.15) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
        pixels += rng.normal(0.0, rng.uniform(1.0, 4.0), pixels.shape).astype(np.float32)
        images.append(Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB"))
        records += [{"frame": f, "track": t, "box": box, "hard": hard, "labels": people[t].labels}
                    for t, box, hard in found]
    return images, records


def _table_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_pedestrian_frames(root: Path, n_clips: int = 8, frames_per_clip: int = 6, people_per_clip: int = 3,
                            seed: int = 0, frame_size: tuple[int, int] = (256, 160), hard_fraction: float = 0.4,
                            test_fraction: float = 0.5, crops: bool = True) -> Path:
    """Render `n_clips` clips of street frames with tracked pedestrians under `root` (the
    layout in this module's docstring) and return `root`. Clips are split whole into
    train / test (`test_fraction` of them test; at least one each when the fraction is
    strictly between 0 and 1 and n_clips >= 2).
    Tracks are numbered across the whole folder (clip k's people after clip k-1's).

    Raises:
        ClipAdaptError: sizes or fractions out of range, or `root` holds a frames.csv
            that this writer did not finish.
    """
    root = Path(root)
    width, height = (int(v) for v in frame_size)
    if n_clips < 1 or frames_per_clip < 1 or not 1 <= people_per_clip <= 6:
        raise ClipAdaptError(f"synthetic frames: need n_clips >= 1, frames_per_clip >= 1 and 1-6 people per clip "
                             f"(got {n_clips}, {frames_per_clip}, {people_per_clip}).")
    if height < 96 or width < height:
        raise ClipAdaptError(f"synthetic frames: frame_size (width, height) needs height >= 96 and width >= height "
                             f"(got {frame_size}).")
    if not 0 <= hard_fraction <= 1 or not 0 <= test_fraction <= 1:
        raise ClipAdaptError(f"synthetic frames: hard_fraction and test_fraction must be in [0, 1] "
                             f"(got {hard_fraction}, {test_fraction}).")
    options = {"generator": "clipadapt.synthetic.pedestrian_frames", "version": FRAMES_VERSION,
               "n_clips": int(n_clips), "frames_per_clip": int(frames_per_clip),
               "people_per_clip": int(people_per_clip), "seed": int(seed), "frame_size": [width, height],
               "hard_fraction": float(hard_fraction), "test_fraction": float(test_fraction), "crops": bool(crops)}
    marker = root / "synthetic.json"
    if marker.is_file():
        try:
            stored = json.loads(marker.read_text())
        except ValueError:
            stored = {}
        if stored == {**options, "complete": True}:
            return root
        for folder in ("frames", "crops"):  # ours, rendered with other options: no stale file stays
            shutil.rmtree(root / folder, ignore_errors=True)
    elif (root / "frames.csv").exists():
        raise ClipAdaptError(f"{root} holds a frames.csv that clipadapt did not render; refusing to overwrite. "
                             "Point the synthetic frames to a new or empty folder.")
    root.mkdir(parents=True, exist_ok=True)
    write_json(marker, {**options, "complete": False})
    for folder in ("frames", "crops"):
        (root / folder).mkdir(exist_ok=True)
    n_test = int(round(test_fraction * n_clips))
    if 0 < test_fraction < 1 and n_clips >= 2:  # both splits get a clip
        n_test = min(max(n_test, 1), n_clips - 1)
    test_clips = set(np.random.default_rng([seed, 1]).permutation(n_clips)[:n_test].tolist())
    frame_rows, crop_rows = [], []
    for c in range(n_clips):
        images, records = render_clip([seed, 0, c], people_per_clip, frames_per_clip, (width, height), hard_fraction)
        names = [f"frames/c{c:03d}_f{f:02d}.png" for f in range(frames_per_clip)]
        for name, image in zip(names, images):
            atomic_write(root / name, lambda p, image=image: image.save(p, format="PNG"))
        split = "test" if c in test_clips else "train"
        for r in records:
            track = c * people_per_clip + r["track"]
            labels = [r["labels"][a] for a in PEDESTRIAN_ATTRIBUTES]
            common = [track, c, r["frame"], r["hard"], split, *labels]
            frame_rows.append([names[r["frame"]], *r["box"], *common])
            if crops:
                x, y, w, h = r["box"]
                crop_name = f"crops/c{c:03d}_f{r['frame']:02d}_t{track:04d}.png"
                crop = crop_box(images[r["frame"]], (x, y, x + w, y + h), crop_name)
                atomic_write(root / crop_name, lambda p, crop=crop: crop.save(p, format="PNG"))
                crop_rows.append([crop_name, *common])
    tail = ["track", "clip", "frame", "hard", "split", *PEDESTRIAN_ATTRIBUTES]
    write_text(root / "frames.csv", _table_text(["path", "x", "y", "w", "h", *tail], frame_rows))
    if crops:
        write_text(root / "crops.csv", _table_text(["img_path", *tail], crop_rows))
    write_json(root / "attributes.json",
               {"attributes": [{"name": a, "sentence": PEDESTRIAN_SENTENCES[a]} for a in PEDESTRIAN_ATTRIBUTES]})
    write_json(marker, {**options, "complete": True})  # last: marks the folder finished
    return root
