"""The three synthetic worlds the embedded tiny CLIP is pretrained on, each as: how to
draw a labelled image, how to caption it, and how to score zero-shot on it.

- streets: the eight Global StreetScapes attributes (captions in the GSS prompt words);
- pedestrians: twelve PA100K attributes (half the captions list every attribute shown in
  short words, half use one or two attribute sentences, now and then with the negation
  of an absent attribute);
- specimens: look-alike fine-grained classes (captions name the class or paraphrase
  one of its descriptions).
Captions name only part of what is in the picture, so zero-shot is above chance with
room left for adaptation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image
from sklearn.metrics import f1_score

from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.data.synthetic.finegrained import FINEGRAINED_CLASSES, FINEGRAINED_DESCRIPTIONS, render_specimen
from clipadapt.data.synthetic.pedestrians import (
    PEDESTRIAN_ATTRIBUTES,
    PEDESTRIAN_SENTENCES,
    render_pedestrian,
    sample_pedestrian_labels,
)
from clipadapt.data.synthetic.streets import ATTRIBUTES, caption_for, render_street_scene, sample_scene_labels
from clipadapt.task import negated_sentence


@dataclass(frozen=True)
class Domain:
    name: str
    sample: Callable[[np.random.Generator], object]  # labels of one image
    render: Callable[[object, np.random.Generator], Image.Image]
    caption: Callable[[object, np.random.Generator], str]
    letterbox: bool  # pad to a square instead of cropping (tall pedestrian crops)


def letterboxed(img: Image.Image) -> Image.Image:
    side = max(img.size)
    square = Image.new("RGB", (side, side))
    square.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return square


# ----------------------------------------------------------------------------- pedestrians
# Short words for a caption that lists everything a pedestrian shows: it makes the image
# features carry every attribute, while zero-shot with full sentences stays hard.
PEDESTRIAN_WORDS = {"Female": "woman", "Hat": "hat", "Glasses": "glasses", "HandBag": "handbag",
                    "Backpack": "backpack", "ShortSleeve": "short sleeves", "UpperStride": "striped top",
                    "LongCoat": "long coat", "Trousers": "trousers", "Shorts": "shorts", "Skirt&Dress": "skirt",
                    "boots": "boots"}


def pedestrian_caption(labels: dict, rng: np.random.Generator) -> str:
    present = [a for a in PEDESTRIAN_ATTRIBUTES if labels[a]]
    if rng.random() < 0.5:
        words = [PEDESTRIAN_WORDS[a] for a in rng.permutation(present)]
        if not labels["Female"]:
            words.insert(int(rng.integers(0, len(words) + 1)), "man")
        return "a pedestrian: " + ", ".join(words) + "."
    absent = [a for a in PEDESTRIAN_ATTRIBUTES if not labels[a]]
    parts = [PEDESTRIAN_SENTENCES[a] for a in rng.permutation(present)[: int(rng.integers(1, 3))]] if present else []
    if absent and (not parts or rng.random() < 0.25):
        parts.append(negated_sentence(PEDESTRIAN_SENTENCES[str(rng.choice(absent))]))
    return ". ".join(parts) + "."


def pedestrian_zero_shot(encode_images, encode_text, images, labels) -> dict:
    """Per attribute, balanced accuracy of "sentence vs its negation"; mA is their mean."""
    feats = encode_images(images)
    report = {}
    for a in PEDESTRIAN_ATTRIBUTES:
        text = encode_text([negated_sentence(PEDESTRIAN_SENTENCES[a]), PEDESTRIAN_SENTENCES[a]])
        pred = (feats @ text.t()).argmax(1).numpy()
        true = np.array([lab[a] for lab in labels])
        recall_pos = (pred[true == 1] == 1).mean() if (true == 1).any() else 0.0
        recall_neg = (pred[true == 0] == 0).mean() if (true == 0).any() else 0.0
        report[a] = {"balanced_accuracy": round(float(0.5 * (recall_pos + recall_neg)), 4),
                     "positive_rate": round(float(true.mean()), 4)}
    return report


# ----------------------------------------------------------------------------- specimens
def specimen_caption(name: str, rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return f"a photo of a {name}."
    return str(rng.choice(FINEGRAINED_DESCRIPTIONS[name]))


def specimen_zero_shot(encode_images, encode_text, images, labels) -> dict:
    """Accuracy with "a photo of a {class}." prompts (chance = 1 / classes)."""
    feats = encode_images(images)
    text = encode_text([f"a photo of a {c}." for c in FINEGRAINED_CLASSES])
    pred = (feats @ text.t()).argmax(1).numpy()
    true = np.array([FINEGRAINED_CLASSES.index(c) for c in labels])
    return {"accuracy": round(float((pred == true).mean()), 4), "chance": round(1 / len(FINEGRAINED_CLASSES), 4),
            "macro_f1": round(float(f1_score(true, pred, average="macro")), 4)}


# ----------------------------------------------------------------------------- streets
def street_zero_shot(encode_images, encode_text, images, labels) -> dict:
    """Per GSS attribute: zero-shot accuracy and macro-F1 with the GSS prompts, next to
    the majority class of this test set."""
    feats = encode_images(images)
    report = {}
    for a in ATTRIBUTES:
        attr = gss_attribute(a, GSS_SCHEMA[a][1])
        pred = (feats @ encode_text(attr.prompts()).t()).argmax(1).numpy()
        true = np.array([attr.classes.index(lab[a]) for lab in labels])
        majority = np.full_like(true, np.bincount(true).argmax())
        classes = range(attr.num_classes)
        report[a] = {
            "accuracy": round(float((pred == true).mean()), 4),
            "macro_f1": round(float(f1_score(true, pred, average="macro", labels=classes, zero_division=0)), 4),
            "majority_accuracy": round(float((majority == true).mean()), 4),
            "majority_macro_f1": round(float(f1_score(true, majority, average="macro", labels=classes, zero_division=0)), 4),
            "chance_accuracy": round(1 / attr.num_classes, 4),
        }
    return report


STREET_SIZES = (64, 80, 96, 128)
PEDESTRIAN_HEIGHTS = (64, 96, 128)
SPECIMEN_SIZES = (64, 96)

DOMAINS = {
    "streets": Domain("streets", sample_scene_labels,
                      lambda lab, rng: render_street_scene(lab, rng, size=int(rng.choice(STREET_SIZES))),
                      caption_for, letterbox=False),
    "pedestrians": Domain("pedestrians", sample_pedestrian_labels,
                          lambda lab, rng: render_pedestrian(lab, rng, height=int(rng.choice(PEDESTRIAN_HEIGHTS))),
                          pedestrian_caption, letterbox=True),
    "specimens": Domain("specimens", lambda rng: str(rng.choice(FINEGRAINED_CLASSES)),
                        lambda name, rng: render_specimen(name, rng, size=int(rng.choice(SPECIMEN_SIZES))),
                        specimen_caption, letterbox=False),
}
ZERO_SHOT = {"streets": street_zero_shot, "pedestrians": pedestrian_zero_shot, "specimens": specimen_zero_shot}
