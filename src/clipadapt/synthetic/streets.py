"""Synthetic street views labelled with all eight Global StreetScapes attributes.

A tiny ray caster (`camera`, `layout`, `surfaces`, `props`) builds a random street
seen from a random spot; `atmosphere` lights it for the lighting and weather classes;
`effects` adds rain and snow, glare, windscreen reflections and quality faults. Every
class leaves a visible cue - global ones (sky colour, haze) and local ones (a small
flare, rails under the camera) - on top of nuisance that carries no label (building
heights and colours, trees, cars, camera height and tilt, field of view).

Public API:
    sample_scene_labels(rng)                   -> {attribute: class}
    render_street_scene(labels, rng, size=128) -> PIL image (panoramas 2:1)
    caption_for(labels, rng)                   -> caption in the GSS prompt words
    write_gss_dataset(root, ...)               -> a GSS-layout folder the real reader reads
"""

from __future__ import annotations

import csv
import json
import shutil
import uuid as uuidlib
from pathlib import Path

import numpy as np
from PIL import Image

from clipadapt.data.gss_schema import GSS_ATTRIBUTES, GSS_SCHEMA, gss_attribute
from clipadapt.synthetic.atmosphere import LIT_WINDOWS, SKY_LEVEL, compose
from clipadapt.synthetic.effects import degrade, glare, rain, reflection, snowfall
from clipadapt.synthetic.layout import build_camera, build_street
from clipadapt.synthetic.props import Canvas, draw_props
from clipadapt.synthetic.surfaces import RIG, trace
from clipadapt.errors import ClipAdaptError

ATTRIBUTES: tuple[str, ...] = GSS_ATTRIBUTES

# Class priors, about as skewed as the manual GSS labels (majority-class accuracy is high
# for glare, pano_status, lighting and quality).
PRIORS: dict[str, dict[str, float]] = {
    "glare": {"no": 0.85, "yes": 0.15},
    "lighting_condition": {"day": 0.78, "dusk/dawn": 0.12, "night": 0.10},
    "pano_status": {"false": 0.80, "true": 0.20},
    "platform": {"cycling surface": 0.08, "driving surface": 0.50, "fields": 0.08, "railway": 0.06,
                 "tunnel": 0.06, "walking surface": 0.22},
    "quality": {"good": 0.70, "slightly poor": 0.20, "very poor": 0.10},
    "reflection": {"no": 0.80, "yes": 0.20},
    "view_direction": {"front/back": 0.70, "side": 0.30},
    "weather": {"clear": 0.50, "cloudy": 0.28, "foggy": 0.06, "rainy": 0.10, "snowy": 0.06},
}
COVER_ROUNDS = 3  # the first COVER_ROUNDS * (most classes) images of a split show every class this often
GENERATOR_VERSION = 2  # bump when the pictures change, so cached folders are re-rendered


def sample_scene_labels(rng: np.random.Generator) -> dict[str, str]:
    """Draw one class per GSS attribute from the imbalanced priors `PRIORS`.

    >>> labels = sample_scene_labels(np.random.default_rng(0))
    >>> sorted(labels) == sorted(GSS_SCHEMA)
    True
    """
    return {a: str(rng.choice(list(p), p=list(p.values()))) for a, p in PRIORS.items()}


def covering_labels(count: int, rng: np.random.Generator) -> list[dict[str, str]]:
    """`count` label sets in which every class of every attribute occurs as evenly as
    possible (each attribute's classes cycled, shuffled independently so attributes are
    not tied to one another)."""
    out = [sample_scene_labels(rng) for _ in range(count)]
    for a in ATTRIBUTES:
        classes = GSS_SCHEMA[a][1]
        cycle = [classes[i % len(classes)] for i in range(count)]
        for labels, c in zip(out, rng.permutation(cycle)):
            labels[a] = str(c)
    return out


# ----------------------------------------------------------------------------- rendering
def render_street_scene(labels: dict[str, str], rng: np.random.Generator, size: int = 128) -> Image.Image:
    """Render one RGB street view showing the given class of every attribute.

    Args:
        labels: attribute -> class name (all eight GSS attributes, as `GSS_SCHEMA`).
        rng: the only source of randomness (same state -> same pixels).
        size: image height in pixels; panoramas are 2 * size wide, other pictures
            square or 4:3.
    """
    unknown = [f"{a}={labels.get(a)!r}" for a in ATTRIBUTES if labels.get(a) not in GSS_SCHEMA[a][1]]
    if unknown:
        raise ValueError(f"render_street_scene needs one GSS class per attribute; bad: {unknown}")
    lighting, weather = labels["lighting_condition"], labels["weather"]
    street = build_street(labels["platform"], rng)
    camera = build_camera(street, labels["view_direction"], labels["pano_status"] == "true", size, rng)
    dirs, local = camera.rays()
    pixel_angle = 2 * np.pi / camera.width if camera.kind == "equirect" else 1 / camera.focal
    frame = trace(street, camera.position, dirs, pixel_angle, LIT_WINDOWS[lighting])
    indoor_y = (-street.tunnel.back, street.tunnel.ahead) if street.tunnel is not None else None
    draw_props(Canvas(frame, camera.height, camera.width), camera, street.props, lighting != "day", indoor_y)
    if camera.kind == "equirect":  # the capture rig (car roof, backpack) fills the bottom of a panorama
        rig = local[:, 2] < -np.sin(rng.uniform(0.9, 1.2))
        frame.albedo[rig] = rng.uniform(0.05, 0.25) * np.array([1.0, 1.0, 1.05], np.float32)
        frame.kind[rig], frame.depth[rig], frame.indoor[rig] = RIG, 1.0, False
    tunnel_light = street.tunnel.lamp_colour if street.tunnel is not None else None
    arr = compose(frame, dirs, camera.height, camera.width, lighting, weather, rng, tunnel_light)
    if weather == "rainy":
        arr = rain(arr, rng, SKY_LEVEL[lighting])
    elif weather == "snowy":
        arr = snowfall(arr, rng)
    if labels["glare"] == "yes":
        arr = glare(arr, rng)
    if labels["reflection"] == "yes":
        arr = reflection(arr, rng)
    arr = degrade(arr, labels["quality"], rng)
    return Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------- captions
def _prompt(attribute: str, class_name: str) -> str:
    """The GSS prompt of one class, e.g. "a photo in foggy weather."."""
    attr = gss_attribute(attribute, GSS_SCHEMA[attribute][1])
    return attr.template.format(attr.words(class_name))


def _clause(attribute: str, class_name: str) -> str:
    """The words after "a photo" in the class's prompt, e.g. "in foggy weather"."""
    return _prompt(attribute, class_name).removeprefix("a photo ").removesuffix(".")


def caption_for(labels: dict[str, str], rng: np.random.Generator) -> str:
    """A caption naming 1-4 random attributes in the exact words of the GSS prompts.

    Either the prompts themselves, one after another ("a photo in foggy weather. a photo
    with glare."), or one sentence built from their clauses ("a panoramic photo in foggy
    weather, taken during twilight and with glare."). A caption about one attribute is
    exactly its prompt, so a CLIP trained on these captions can be used zero-shot with
    the GSS prompts; naming only some attributes leaves the rest to learn later.
    """
    count = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.2, 0.15]))
    chosen = [str(a) for a in rng.choice(list(ATTRIBUTES), size=count, replace=False)]
    if rng.random() < 0.5:
        return " ".join(_prompt(a, labels[a]) for a in chosen)
    adjective = ""
    if "pano_status" in chosen:  # its template puts the class word before "photo"
        chosen.remove("pano_status")
        adjective = gss_attribute("pano_status", GSS_SCHEMA["pano_status"][1]).words(labels["pano_status"]) + " "
    clauses = [_clause(a, labels[a]) for a in chosen]
    if len(clauses) > 1:
        clauses = [", ".join(clauses[:-1]) + " and " + clauses[-1]]
    return f"a {adjective}photo{' ' + clauses[0] if clauses else ''}."


# ----------------------------------------------------------------------------- GSS folder
def _uuid(rng: np.random.Generator) -> str:
    """A version-4-shaped uuid drawn from `rng` (so a seed gives the same names)."""
    return str(uuidlib.UUID(bytes=rng.bytes(16), version=4))


def _messy(label: str, rng: np.random.Generator) -> str:
    """Raw labels as people type them: odd case and stray spaces (readers normalise)."""
    r = rng.random()
    if r < 0.08:
        return f" {label.title()}"
    if r < 0.12:
        return f"{label.upper()} "
    if r < 0.15:
        return f"{label}  "
    return label


def _check_params(n_train: int, n_test: int, image_size: int, label_fraction: float) -> None:
    if n_train < 1 or n_test < 1:
        raise ClipAdaptError(f"data.synthetic: n_train and n_test must be >= 1 (got {n_train}, {n_test}).")
    if image_size < 32:
        raise ClipAdaptError(f"data.synthetic.image_size must be >= 32 pixels (got {image_size}).")
    if not 0 < label_fraction <= 1:
        raise ClipAdaptError(f"data.synthetic.label_fraction must be in (0, 1] (got {label_fraction}).")


def _prepare_root(root: Path, params: dict) -> bool:
    """True if root already holds a finished rendering with these params. Otherwise
    clears what an earlier (different or unfinished) rendering left, and refuses to
    touch a folder that looks like real data."""
    params_file, done = root / "synthetic.json", root / "done"
    if params_file.is_file():
        try:
            same = json.loads(params_file.read_text()) == params
        except json.JSONDecodeError:
            same = False
        if same and done.is_file():
            return True
        for sub in ("img", "train", "test"):
            shutil.rmtree(root / sub, ignore_errors=True)
        done.unlink(missing_ok=True)
    elif any((root / sub).exists() for sub in ("img", "train", "test")):
        raise ClipAdaptError(
            f"{root} already holds img/, train/ or test/ that clipadapt did not render; refusing to overwrite. "
            "Point data.root of format 'synthetic-gss' to a new or empty folder."
        )
    return False


def _write_split(root: Path, split: str, n: int, seed: int, image_size: int, label_fraction: float,
                 rng: np.random.Generator) -> None:
    """Render one split's images and write its eight attribute CSVs."""
    cover = min(n, COVER_ROUNDS * max(len(GSS_SCHEMA[a][1]) for a in ATTRIBUTES))
    all_labels = covering_labels(cover, rng) + [sample_scene_labels(rng) for _ in range(n - cover)]
    rows = []
    for i, labels in enumerate(all_labels):
        name = _uuid(rng)
        rel = f"img/{int(rng.integers(1, 8))}/{name}.jpeg"
        # pixels from their own stream: label_fraction never changes an image
        pixels = np.random.default_rng([seed, 0 if split == "train" else 1, i])
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        render_street_scene(labels, pixels, image_size).save(root / rel, quality=92)
        rows.append({"uuid": name, "source": str(rng.choice(["Mapillary", "KartaView"])),
                     "lat": f"{rng.uniform(-55, 70):.6f}", "lon": f"{rng.uniform(-180, 180):.6f}", "img_path": rel,
                     "labels": labels})
    (root / split).mkdir(parents=True, exist_ok=True)
    for a in ATTRIBUTES:
        keep = np.ones(n, bool)
        if label_fraction < 1:  # like real GSS: each attribute file covers its own images
            keep = rng.random(n) < label_fraction
            keep[:cover] = True  # every class stays present
        with open(root / split / f"{a}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["uuid", "source", "lat", "lon", "img_path", a])
            for row, k in zip(rows, keep):
                if k:
                    writer.writerow([row["uuid"], row["source"], row["lat"], row["lon"], row["img_path"], _messy(row["labels"][a], rng)])


def write_gss_dataset(root: Path, n_train: int = 600, n_test: int = 300, seed: int = 0, image_size: int = 128,
                      label_fraction: float = 1.0) -> Path:
    """Render a Global StreetScapes-layout data set under `root` and return `root`.

    Layout (SPEC 1): img/<1..7>/<uuid>.jpeg, and train/<attribute>.csv, test/<attribute>.csv
    for all eight attributes with columns uuid, source, lat, lon, img_path, <attribute>.
    Labels are written with stray case and spaces now and then (readers normalise). The
    first images of each split cycle through every class, so every class is in both splits.
    With label_fraction < 1 each attribute CSV lists only a random part of the images.

    Deterministic for a seed. A `done` marker is written last; a folder already finished
    with the same parameters (synthetic.json) is returned as it is.
    """
    root = Path(root)
    _check_params(n_train, n_test, image_size, label_fraction)
    params = {"generator": "clipadapt.synthetic.streets", "version": GENERATOR_VERSION, "n_train": int(n_train),
              "n_test": int(n_test), "seed": int(seed), "image_size": int(image_size), "label_fraction": float(label_fraction)}
    root.mkdir(parents=True, exist_ok=True)
    if _prepare_root(root, params):
        return root
    (root / "synthetic.json").write_text(json.dumps(params, indent=2) + "\n")
    rng = np.random.default_rng(seed)
    _write_split(root, "train", n_train, seed, image_size, label_fraction, rng)
    _write_split(root, "test", n_test, seed, image_size, label_fraction, rng)
    (root / "done").write_text("finished\n")
    return root
