"""Synthetic pedestrian crops labelled with twelve binary PA100K attributes (SPEC 2).

A seeded 2-D painter (`pedestrian_parts`) draws a standing person - head, torso, arms,
legs, feet - on a cluttered street backdrop, dressed at random, and then blurs, lights
and noises the crop like a surveillance camera. Every attribute is drawn locally where
it belongs (a hat on the head, a backpack behind the shoulders, a hand bag under a hand,
boots on the shins, stripes on the torso), so models that attend to body regions can
learn it from real pixels, offline.

The attribute names are spelt exactly as in PA100K's annotation file (including its
"UpperStride" and lower-case "boots") and the sentences are the project's PA100K ones,
so a model trained here can be pointed at PA100K columns by name.

Public API:
    PEDESTRIAN_ATTRIBUTES, PEDESTRIAN_SENTENCES
    sample_pedestrian_labels(rng, fixed=None)     -> {attribute: 0 or 1}
    render_pedestrian(labels, rng, height=128)    -> PIL RGB image, height // 2 wide
    write_par_dataset(root, ...)                  -> a folder of images and label CSVs
"""

from __future__ import annotations

import csv
import json
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from clipadapt.data.par.sentences import PA100K
from clipadapt.synthetic.pedestrian_parts import (
    SUPERSAMPLE,
    camera_finish,
    choose_outfit,
    draw_pedestrian,
    place_figure,
    street_backdrop,
)
from clipadapt.io import atomic_write, write_json, write_text
from clipadapt.errors import ClipAdaptError

# PA100K file order, restricted to attributes that stay visible at 64 px.
PEDESTRIAN_ATTRIBUTES: tuple[str, ...] = (
    "Female", "Hat", "Glasses", "HandBag", "Backpack", "ShortSleeve", "UpperStride", "LongCoat",
    "Trousers", "Shorts", "Skirt&Dress", "boots",
)
# The project's own PA100K sentences, so the names and texts match PA100K's columns.
PEDESTRIAN_SENTENCES: dict[str, str] = {name: PA100K[name] for name in PEDESTRIAN_ATTRIBUTES}
LOWER_BODY = ("Trousers", "Shorts", "Skirt&Dress")  # exactly one of these is worn
GENERATOR_VERSION = 1  # bump when the pictures change, so cached folders are re-rendered


# ----------------------------------------------------------------------------- labels
def _draw_labels(rng: np.random.Generator) -> dict[str, int]:
    """One unconstrained draw. Rates and couplings roughly follow PA100K: skirts mostly on
    women, coats never with short sleeves and rarely with shorts, boots with coats and
    skirts more than with shorts, hand bags more often carried by women."""
    u = rng.random(12)  # a fixed number of draws (two spare), so every label set uses the stream alike
    female = u[0] < 0.45
    lower_p = (0.40, 0.10, 0.50) if female else (0.72, 0.26, 0.02)
    lower = LOWER_BODY[int(np.searchsorted(np.cumsum(lower_p), u[1] * 0.999999))]
    coat = u[2] < (0.02 if lower == "Shorts" else 0.17)
    boots_p = 0.40 if coat else 0.03 if lower == "Shorts" else 0.20 if female else 0.08
    out = {
        "Female": female,
        "Hat": u[3] < 0.14,
        "Glasses": u[4] < 0.2,
        "HandBag": u[5] < (0.32 if female else 0.10),
        "Backpack": u[6] < 0.22,
        "ShortSleeve": not coat and u[7] < (0.60 if lower == "Shorts" else 0.36),
        "UpperStride": u[8] < (0.05 if coat else 0.2),
        "LongCoat": coat,
        "boots": u[9] < boots_p,
    }
    out.update({name: name == lower for name in LOWER_BODY})
    return {a: int(out[a]) for a in PEDESTRIAN_ATTRIBUTES}


def sample_pedestrian_labels(rng: np.random.Generator, fixed: dict[str, int] | None = None) -> dict[str, int]:
    """Draw a consistent 0/1 label per attribute (exactly one of Trousers, Shorts and
    Skirt&Dress; no short sleeves under a long coat), with positive rates of about
    10-60%.

    Args:
        rng: the only source of randomness.
        fixed: optional attribute -> value the draw must have; other attributes keep
            their conditional distribution (draws are repeated until it holds).

    Raises:
        ValueError: `fixed` names an unknown attribute, or asks for an impossible
            combination (e.g. trousers and shorts together).
    """
    fixed = dict(fixed or {})
    unknown = sorted(set(fixed) - set(PEDESTRIAN_ATTRIBUTES))
    if unknown:
        raise ValueError(f"sample_pedestrian_labels: unknown attribute(s) {unknown}; known: {PEDESTRIAN_ATTRIBUTES}")
    for _ in range(5000):  # every attribute value has p >= ~8%, most pairs >= 0.3%: ample tries
        labels = _draw_labels(rng)
        if all(labels[a] == int(v) for a, v in fixed.items()):
            return labels
    raise ValueError(f"sample_pedestrian_labels: no consistent label set has {fixed}.")


def check_labels(labels: dict[str, int]) -> None:
    """Raise ValueError unless `labels` gives 0/1 for every attribute and exactly one
    lower-body garment (the painter draws one)."""
    bad = [f"{a}={labels.get(a)!r}" for a in PEDESTRIAN_ATTRIBUTES if labels.get(a) not in (0, 1)]
    if bad:
        raise ValueError(f"render_pedestrian needs 0 or 1 for every attribute; bad: {bad}")
    if sum(labels[a] for a in LOWER_BODY) != 1:
        raise ValueError(f"render_pedestrian needs exactly one of {LOWER_BODY}; got {[labels[a] for a in LOWER_BODY]}")


# ----------------------------------------------------------------------------- rendering
def render_pedestrian(labels: dict[str, int], rng: np.random.Generator, height: int = 128) -> Image.Image:
    """Render one RGB pedestrian crop, `height // 2` wide, showing the given attributes.

    Args:
        labels: attribute -> 0/1 for all of `PEDESTRIAN_ATTRIBUTES` (consistent, as
            `sample_pedestrian_labels` draws them).
        rng: the only source of randomness (same state -> same pixels).
        height: image height in pixels (>= 16).
    """
    check_labels(labels)
    if height < 16:
        raise ValueError(f"render_pedestrian: height must be >= 16 pixels (got {height}).")
    width = height // 2
    cw, ch = width * SUPERSAMPLE, height * SUPERSAMPLE
    canvas = street_backdrop(rng, cw, ch)
    figure = place_figure(rng, cw, ch, bool(labels["Female"]), bool(labels["HandBag"]))
    draw_pedestrian(ImageDraw.Draw(canvas), figure, labels, choose_outfit(rng, labels))
    return camera_finish(canvas, rng, width, height)


# ----------------------------------------------------------------------------- folder
def _split_labels(n: int, rng: np.random.Generator) -> tuple[list[dict[str, int]], np.ndarray]:
    """n label sets in which, where n allows, every attribute is both present and absent
    (so every split can be scored per attribute); returns them shuffled, with a mask of
    those covering rows (kept labelled under label_fraction)."""
    fixed = [{a: v} for a in PEDESTRIAN_ATTRIBUTES for v in (1, 0)][:n]
    labels = [sample_pedestrian_labels(rng, f) for f in fixed]
    labels += [sample_pedestrian_labels(rng) for _ in range(n - len(fixed))]
    order = rng.permutation(n)
    covering = np.zeros(n, bool)
    covering[: len(fixed)] = True
    return [labels[i] for i in order], covering[order]


def _csv_text(paths: list[str], matrix: np.ndarray) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["img_path", *PEDESTRIAN_ATTRIBUTES])
    writer.writerows([path, *map(int, row)] for path, row in zip(paths, matrix))
    return buf.getvalue()


OUTPUTS = ("images", "train.csv", "test.csv", "attributes.json")


def _prepare_root(root: Path, options: dict) -> bool:
    """True if root already holds a finished rendering with these options. Otherwise
    removes what an earlier (different or unfinished) rendering of ours left, and
    refuses to touch a folder that holds such files without our marker."""
    marker = root / "synthetic.json"
    if marker.is_file():
        try:
            stored = dict(json.loads(marker.read_text()))
        except (ValueError, TypeError):
            stored = {}
        if stored.pop("complete", False) is True and stored == options:
            return True
        shutil.rmtree(root / "images", ignore_errors=True)
        for name in OUTPUTS[1:]:
            (root / name).unlink(missing_ok=True)
    elif any((root / name).exists() for name in OUTPUTS):
        raise ClipAdaptError(
            f"{root} already holds images/, train.csv, test.csv or attributes.json that clipadapt did not render; "
            "refusing to overwrite. Point the synthetic PAR data set to a new or empty folder."
        )
    return False


def write_par_dataset(root: Path, n_train: int = 800, n_test: int = 400, seed: int = 0, image_size: int = 128,
                      label_fraction: float = 1.0) -> Path:
    """Render a synthetic pedestrian-attribute data set under `root` and return `root`.

    Layout:
        images/train_00000.png ...  crops, `image_size` high and half as wide
        train.csv, test.csv         columns img_path (relative to root) and one 0/1 column
                                    per attribute, in `PEDESTRIAN_ATTRIBUTES` order
        attributes.json             {"attributes": [{"name": ..., "sentence": ...}, ...]}
        synthetic.json              the options, with "complete": true once finished

    With label_fraction < 1 each TRAINING cell is kept with that probability and
    otherwise written as -1 (unlabelled); the test split stays fully labelled because
    it is the yardstick. Where the split is large enough, every attribute is both
    present and absent and those rows are never blanked.

    Deterministic for a seed: labels, pixels and blanks come from separate streams, so
    label_fraction never changes an image or a label. A folder finished with the same
    options is returned untouched; other options re-render it from clean.

    Raises:
        ClipAdaptError: bad sizes or fraction, or `root` holds such files without our
            marker (someone else's data).
    """
    root = Path(root)
    if n_train < 1 or n_test < 1:
        raise ClipAdaptError(f"synthetic PAR: n_train and n_test must be >= 1 (got {n_train}, {n_test}).")
    if image_size < 32:
        raise ClipAdaptError(f"synthetic PAR: image_size must be >= 32 pixels (got {image_size}).")
    if not 0 < label_fraction <= 1:
        raise ClipAdaptError(f"synthetic PAR: label_fraction must be in (0, 1] (got {label_fraction}).")
    options = {"generator": "clipadapt.synthetic.pedestrians", "version": GENERATOR_VERSION,
               "n_train": int(n_train), "n_test": int(n_test), "seed": int(seed), "image_size": int(image_size),
               "label_fraction": float(label_fraction), "attributes": list(PEDESTRIAN_ATTRIBUTES)}
    root.mkdir(parents=True, exist_ok=True)
    if _prepare_root(root, options):
        return root
    write_json(root / "synthetic.json", {**options, "complete": False})  # claims the folder before writing into it
    (root / "images").mkdir()
    for split_id, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        labels, covering = _split_labels(n, np.random.default_rng([seed, split_id, 0]))
        paths = [f"images/{split}_{i:05d}.png" for i in range(n)]
        for i, (rel, lab) in enumerate(zip(paths, labels)):
            img = render_pedestrian(lab, np.random.default_rng([seed, split_id, 1, i]), image_size)
            atomic_write(root / rel, lambda p, img=img: img.save(p, format="PNG"))
        matrix = np.array([[lab[a] for a in PEDESTRIAN_ATTRIBUTES] for lab in labels], np.int64)
        if split == "train" and label_fraction < 1:
            blank = np.random.default_rng([seed, split_id, 2]).random(matrix.shape) >= label_fraction
            blank[covering] = False
            matrix[blank] = -1
        write_text(root / f"{split}.csv", _csv_text(paths, matrix))
    write_json(root / "attributes.json",
               {"attributes": [{"name": a, "sentence": PEDESTRIAN_SENTENCES[a]} for a in PEDESTRIAN_ATTRIBUTES]})
    write_json(root / "synthetic.json", {**options, "complete": True})  # last: marks the folder finished
    return root
