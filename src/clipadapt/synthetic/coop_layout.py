"""The synthetic fine-grained birds written in a CoOp benchmark layout, so the benchmark
readers, the K-shot draws and `clipadapt bench` run end to end offline.

The layout is Caltech101's as CoOp distributes it (`data.dataset: caltech101`, template
"a photo of a {}."): `caltech-101/101_ObjectCategories/<class>/image_NNNN.png` and
`caltech-101/split_zhou_Caltech101.json` = {"train" | "val" | "test": [[path, label, class
name], ...]}. The ten classes are `FINEGRAINED_CLASSES`, whose words the embedded tiny CLIP
knows, so zero-shot is above chance and adaptation has room.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clipadapt.synthetic.finegrained import FINEGRAINED_CLASSES, GENERATOR_VERSION, render_specimen
from clipadapt.io import write_json

FOLDER, IMAGES, SPLIT_FILE = "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"


def write_coop_birds(base: Path, n_train: int = 16, n_val: int = 4, n_test: int = 30, seed: int = 0,
                     image_size: int = 64, classes: tuple[str, ...] = FINEGRAINED_CLASSES,
                     species_tones: bool = False) -> Path:
    """Render the birds under base/caltech-101/ (per class: n_train, n_val, n_test images) and
    return that folder. Rendering again with the same options returns at once.
    `species_tones`: each class also has a body colour of its own that its name does not
    say (`render_specimen`): what a few labelled images can teach and zero-shot cannot see."""
    root = Path(base) / FOLDER
    params = {"generator": "clipadapt.synthetic.coop_layout", "version": GENERATOR_VERSION, "n_train": n_train,
              "n_val": n_val, "n_test": n_test, "seed": seed, "image_size": image_size, "classes": list(classes),
              "species_tones": species_tones}
    marker = root / "synthetic.json"
    if marker.is_file() and json.loads(marker.read_text()) == params and (root / SPLIT_FILE).is_file():
        return root
    split: dict[str, list] = {}
    for split_id, (name, count) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        entries = []
        for label, cls in enumerate(classes):
            folder = cls.replace(" ", "_")
            (root / IMAGES / folder).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                relative = f"{folder}/image_{split_id}{i:04d}.png"
                rng = np.random.default_rng([seed, split_id, label, i])
                render_specimen(cls, rng, image_size, species_tones).save(root / IMAGES / relative)
                entries.append([relative, label, cls])
        split[name] = entries
    write_json(root / SPLIT_FILE, split)
    write_json(marker, params)  # last: a half-written folder is rendered again
    return root
