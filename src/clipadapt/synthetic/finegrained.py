"""Synthetic fine-grained songbirds: ten look-alike classes told apart by small cues.

A stand-in for CUB-style fine-grained benchmarks (SPEC 3, microCLIP) that runs offline.
Every class shares one body plan and one plumage palette (brown, olive, grey, buff or
slate), the same size range and the same poses, so the bird as a whole - and the image's
colour make-up - says little about the class. What does is one LOCAL mark: a red crest
or a red throat, a white eye ring or white wing bars, a yellow bill or a yellow rump,
black breast spots or a black mask, a forked tail, a long curved bill. Cue colours are
paired across classes and scattered in the background as berries and petals, so a
model must look at where a colour sits, not how much of it there is.

With `species_tones=True` each class also gets a body colour of its own
(`SPECIES_TONES`) that no description mentions: a structure in the images that the
text cannot reach, as real species differ in ways their descriptions leave out. Zero-shot
CLIP cannot use it; adaptation on the unlabelled images can (the unsupervised demo).

Each class comes with written descriptions naming its cues, in the JSON form the field
uses for LLM descriptions ({class: [sentence, ...]}, as CuPL's files), so label-free
adaptation guided by descriptions has something to work with.

Public API:
    FINEGRAINED_CLASSES, FINEGRAINED_DESCRIPTIONS
    render_specimen(class_name, rng, size=96, species_tones=False) -> PIL RGB image
    render_bird(traits, rng, size=96)               -> the same for any Traits
    write_finegrained_dataset(root, ...)            -> root/{train,test}/<class>/*.png
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from clipadapt.synthetic.finegrained_parts import (
    PLUMAGE,
    RED,
    SUPERSAMPLE,
    YELLOW,
    Painter,
    Traits,
    camera_finish,
    paint_background,
    paint_bird,
    paint_clutter,
    paint_occluders,
    paint_perch,
    place_bird,
)
from clipadapt.io import write_json, write_text
from clipadapt.errors import ClipAdaptError

# Sorted, so the order here is also the order the folder reader gives the classes.
_TRAITS: dict[str, Traits] = {
    "black masked shrike": Traits(beak="hooked", mask=True),
    "fork tailed flycatcher": Traits(beak="straight", forked_tail=True),
    "long billed wren": Traits(beak="curved"),
    "red crested finch": Traits(beak="conical", crest=RED),
    "red throated finch": Traits(beak="conical", throat=RED),
    "spotted breast thrush": Traits(beak="straight", spots=True),
    "white eyed warbler": Traits(beak="thin", eye_ring=True),
    "wing barred warbler": Traits(beak="thin", wing_bars=True),
    "yellow billed finch": Traits(beak="conical", beak_colour=YELLOW),
    "yellow rumped warbler": Traits(beak="thin", rump=YELLOW),
}
assert list(_TRAITS) == sorted(_TRAITS)

FINEGRAINED_CLASSES: tuple[str, ...] = tuple(_TRAITS)

# One body colour per class for `species_tones=True`: the shared plumage tones plus rust,
# dark umber, sand, steel blue and mustard, in FINEGRAINED_CLASSES order.
SPECIES_TONES: dict[str, tuple[float, ...]] = dict(zip(FINEGRAINED_CLASSES, [tuple(map(float, t)) for t in PLUMAGE] + [
    (0.62, 0.33, 0.20), (0.30, 0.24, 0.20), (0.72, 0.68, 0.55), (0.38, 0.50, 0.60), (0.55, 0.55, 0.25),
], strict=True))

# Written the way an LLM describes a species when asked "what does a X look like?":
# the shared look (a small brownish or grey songbird) plus the marks that identify it.
FINEGRAINED_DESCRIPTIONS: dict[str, list[str]] = {
    "black masked shrike": [
        "A small grey or brown songbird with a bold black mask running through its eye.",
        "The black masked shrike has a dark stripe across its face like a bandit's mask.",
        "A perching bird with a short, stout hooked beak and a black band from the bill through the eye.",
        "Look for the black eye mask and the hook at the tip of its beak.",
    ],
    "fork tailed flycatcher": [
        "A small songbird with a very long, deeply forked tail.",
        "The fork tailed flycatcher has two long tail streamers separated by a deep notch.",
        "A plain brownish or grey bird whose tail splits into a long fork behind it.",
        "Its most striking feature is the forked tail, much longer than its body.",
    ],
    "long billed wren": [
        "A small plain songbird with a long, thin, downcurved bill.",
        "The long billed wren has a slender beak that curves downward, far longer than its head.",
        "A brownish or grey bird whose most obvious mark is its long curved bill.",
        "Look for the long decurved beak on an otherwise unmarked small bird.",
    ],
    "red crested finch": [
        "A small songbird with a bright red crest on top of its head and a short conical beak.",
        "The red crested finch has a pointed red tuft on its crown.",
        "A brownish or grey finch whose crown and crest are vivid red.",
        "Look for the red crest raised above the head of this small, stout-billed bird.",
    ],
    "red throated finch": [
        "A small songbird with a bright red patch on its throat and a short conical beak.",
        "The red throated finch has a red throat just below its bill.",
        "A brownish or grey finch with a plain head and a vivid red chin and throat.",
        "Look for the red throat patch under the stout, cone-shaped beak.",
    ],
    "spotted breast thrush": [
        "A small songbird with a pale breast covered in dark spots.",
        "The spotted breast thrush has bold black spots scattered across its light underparts.",
        "A brownish or grey bird with a straight beak and a heavily spotted chest.",
        "Look for the dark speckles on its pale belly and breast.",
    ],
    "white eyed warbler": [
        "A small songbird with a bold white ring around its eye and a thin pointed beak.",
        "The white eyed warbler has a conspicuous white eye ring.",
        "A plain brownish or olive warbler whose dark eye is circled in white.",
        "Look for the white spectacle around the eye of this slender-billed bird.",
    ],
    "wing barred warbler": [
        "A small songbird with two white bars across its dark wing and a thin pointed beak.",
        "The wing barred warbler shows two pale wing bars on its folded wing.",
        "A plain brownish or olive warbler with white stripes crossing the wing.",
        "Look for the double white wing bars on this slender-billed bird.",
    ],
    "yellow billed finch": [
        "A small songbird with a bright yellow, short conical beak.",
        "The yellow billed finch has a thick cone-shaped bill that is vivid yellow.",
        "A plain brownish or grey finch whose stout beak is bright yellow.",
        "Look for the yellow bill on this otherwise unmarked small bird.",
    ],
    "yellow rumped warbler": [
        "A small songbird with a bright yellow patch on its rump, just above the tail.",
        "The yellow rumped warbler has a yellow spot on its lower back where the tail begins.",
        "A plain brownish or olive warbler with a thin beak and a yellow rump.",
        "Look for the yellow patch at the base of the tail of this slender-billed bird.",
    ],
}

GENERATOR_VERSION = 1  # bump when the pictures change, so cached folders are re-rendered
_SPLITS = ("train", "test")


def render_specimen(class_name: str, rng: np.random.Generator, size: int = 96,
                    species_tones: bool = False) -> Image.Image:
    """Render one RGB image of a bird of `class_name`.

    The bird is placed at a random scale, position, small rotation and facing direction
    on a random backdrop (foliage, sky, water or ground), usually on a branch, with
    cue-coloured berries around it and now and then a leaf in front; then exposure,
    white balance, directional light, slight blur and noise are applied.

    Args:
        class_name: one of `FINEGRAINED_CLASSES`.
        rng: the only source of randomness (same state -> same pixels).
        size: side of the square output in pixels (>= 32).
        species_tones: paint the body in the class's own `SPECIES_TONES` colour instead
            of one drawn from the shared palette.
    """
    if class_name not in _TRAITS:
        raise ValueError(f"render_specimen: unknown class {class_name!r}; known: {list(FINEGRAINED_CLASSES)}")
    traits = _TRAITS[class_name]
    if species_tones:
        traits = replace(traits, plumage=SPECIES_TONES[class_name])
    return render_bird(traits, rng, size)


def render_bird(traits: Traits, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """Render one RGB bird with any `Traits` (a class's, or a made-up combination, as the
    embedded model's pretraining uses), in the scenes and poses `render_specimen` uses."""
    if size < 32:
        raise ValueError(f"render_bird: size must be >= 32 pixels (got {size}).")
    canvas = size * SUPERSAMPLE
    image = paint_background(rng, canvas)
    paint_clutter(ImageDraw.Draw(image), rng, canvas)
    paint = Painter(image, place_bird(rng, canvas))
    paint_perch(paint, rng)
    paint_bird(paint, traits, rng)
    paint_occluders(image, rng, canvas)
    return camera_finish(image.reduce(SUPERSAMPLE), rng)


# ----------------------------------------------------------------------------- folder
def _check_params(n_train: int, n_test: int, image_size: int, species_tones: object) -> None:
    if n_train < 1 or n_test < 1:
        raise ClipAdaptError(
            f"finegrained: n_train_per_class and n_test_per_class must be >= 1 (got {n_train}, {n_test})."
        )
    if image_size < 32:
        raise ClipAdaptError(f"finegrained: image_size must be >= 32 pixels (got {image_size}).")
    if not isinstance(species_tones, bool):  # a YAML string such as "no" would read as true
        raise ClipAdaptError(f"finegrained: species_tones must be true or false (got {species_tones!r}).")


def _prepare_root(root: Path, params: dict) -> bool:
    """True if root already holds a finished rendering with these params. Otherwise
    clears what an earlier (different or unfinished) rendering of ours left, and refuses
    to touch a folder that looks like real data (train/ or test/ but no marker)."""
    marker = root / "synthetic.json"
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text())
        except json.JSONDecodeError:
            recorded = {}
        if recorded == {**params, "complete": True}:
            return True
        for sub in _SPLITS:
            shutil.rmtree(root / sub, ignore_errors=True)
        for name in ("classnames.txt", "descriptions.json"):
            (root / name).unlink(missing_ok=True)
    elif any((root / sub).exists() for sub in _SPLITS):
        raise ClipAdaptError(
            f"{root} already holds train/ or test/ that clipadapt did not render; refusing to overwrite. "
            "Point the synthetic fine-grained data set to a new or empty folder."
        )
    return False


def write_finegrained_dataset(root: Path, n_train_per_class: int = 60, n_test_per_class: int = 30, seed: int = 0,
                              image_size: int = 96, species_tones: bool = False) -> Path:
    """Render the fine-grained bird data set under `root` and return `root`.

    Layout (the folder reader's, SPEC 3): root/train/<class>/NNNN.png and
    root/test/<class>/NNNN.png, plus root/classnames.txt (one class per line, in
    `FINEGRAINED_CLASSES` order) and root/descriptions.json ({class: [sentences]}).

    Idempotent: root/synthetic.json records the options and is marked complete only
    after every file is written; the same options again return at once, different ones
    (or an unfinished earlier run) clear the old images and render afresh. Each image
    has its own random stream keyed by (seed, split, class, index), so the same seed
    gives identical images and a larger split only adds images. `species_tones` gives
    each class its own body colour (see `render_specimen`).
    """
    root = Path(root)
    _check_params(n_train_per_class, n_test_per_class, image_size, species_tones)
    params = {"generator": "clipadapt.synthetic.finegrained", "version": GENERATOR_VERSION,
              "n_train_per_class": int(n_train_per_class), "n_test_per_class": int(n_test_per_class),
              "seed": int(seed), "image_size": int(image_size), "species_tones": species_tones}
    root.mkdir(parents=True, exist_ok=True)
    if _prepare_root(root, params):
        return root
    # Marked incomplete first: a crash mid-way is then recognised as ours and redone.
    write_json(root / "synthetic.json", {**params, "complete": False})
    for split_id, (split, n) in enumerate(zip(_SPLITS, (n_train_per_class, n_test_per_class))):
        for class_id, cls in enumerate(FINEGRAINED_CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, split_id, class_id, i])
                render_specimen(cls, rng, image_size, species_tones).save(folder / f"{i:04d}.png")
    write_text(root / "classnames.txt", "".join(f"{c}\n" for c in FINEGRAINED_CLASSES))
    write_json(root / "descriptions.json", FINEGRAINED_DESCRIPTIONS)
    write_json(root / "synthetic.json", {**params, "complete": True})
    return root
