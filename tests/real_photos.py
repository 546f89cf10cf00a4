"""A small data set of real photographs for learning tests, written in a second or two.

scikit-learn ships two photos (china.jpg: a pagoda among trees; flower.jpg: an orange
dahlia; 427 x 640 each). Three classes of random square crops (30-70% of the photo's
height), resized to `size` px and saved as JPEG under root/{train,test}/<class>/:
the pagoda photo, the flower photo, and the flower photo with its hue turned half-way
round (a blue-violet flower on a red background), so that telling the last two apart
takes colour, not only content.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_CLASSES = ("china", "flower", "hue")


def write_photo_classes(root: Path, n_train: int = 70, n_test: int = 30, size: int = 40, seed: int = 0,
                        names: tuple[str, str, str] = PHOTO_CLASSES) -> Path:
    """root/{train,test}/<name>/NNN.jpg, n_train and n_test crops per class; returns root."""
    from sklearn.datasets import load_sample_images

    china, flower = (Image.fromarray(a) for a in load_sample_images().images)
    rng = np.random.default_rng(seed)

    def crop(photo: Image.Image) -> Image.Image:
        width, height = photo.size
        side = int(rng.uniform(0.3, 0.7) * height)
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        return photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)

    def hue_turned(photo: Image.Image) -> Image.Image:
        h, s, v = crop(photo).convert("HSV").split()
        return Image.merge("HSV", (h.point(lambda p: (p + 128) % 256), s, v)).convert("RGB")

    makers = dict(zip(names, (lambda: crop(china), lambda: crop(flower), lambda: hue_turned(flower))))
    root = Path(root)
    for split, count in (("train", n_train), ("test", n_test)):
        for name, make in makers.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                make().save(folder / f"{i:03d}.jpg", quality=90)
    return root
