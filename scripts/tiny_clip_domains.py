"""The three synthetic worlds the embedded tiny CLIP is pretrained on, each as: how to
draw a labelled image, how to caption it, and how to score zero-shot on it.

- streets: the eight Global StreetScapes attributes (captions in the GSS prompt words);
- pedestrians: twelve PA100K attributes (half the captions list every attribute shown in
  short words, half use one or two attribute sentences, now and then with the negation
  of an absent attribute);
- specimens: look-alike fine-grained classes (captions name the class or paraphrase
  one of its descriptions);
- birds: songbirds with made-up combinations of the same parts (beak shape and colour,
  crest, throat, eye ring, wing bars, rump, spots, mask, forked tail), captioned by one
  or two of their parts and a kind word (finch, warbler, ...), never by a class name.
  It imitates how a web-scale CLIP meets fine-grained species: it learns the parts from
  everyday captions and rarely sees the species' names. (Not in the shipped recipe: here
  zero-shot with the class descriptions rose as fast as a probe on the features;
  docs/experiments/microclip-demo.md has the figures.)
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
from clipadapt.synthetic.finegrained import (
    FINEGRAINED_CLASSES,
    FINEGRAINED_DESCRIPTIONS,
    render_bird,
    render_specimen,
)
from clipadapt.synthetic.finegrained_parts import BLACK, HORN, RED, WHITE, YELLOW, Traits
from clipadapt.synthetic.pedestrians import (
    PEDESTRIAN_ATTRIBUTES,
    PEDESTRIAN_SENTENCES,
    render_pedestrian,
    sample_pedestrian_labels,
)
from clipadapt.synthetic.streets import ATTRIBUTES, caption_for, render_street_scene, sample_scene_labels
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


# ----------------------------------------------------------------------------- birds
_KIND = {"conical": "finch", "thin": "warbler", "straight": ("thrush", "flycatcher"), "hooked": "shrike",
         "curved": "wren"}
_BEAK_WORDS = {"conical": ("a short thick bill", "a stout cone-shaped beak"),
               "thin": ("a thin pointed bill", "a fine slender beak"),
               "straight": ("a straight bill", "a medium straight beak"),
               "hooked": ("a hooked bill", "a beak with a hooked tip"),
               "curved": ("a long curved bill", "a long downcurved beak")}
_COLOURS = {RED: "red", YELLOW: "yellow", WHITE: "white", BLACK: "black"}
_MARKS = ("crest", "throat", "eye_ring", "wing_bars", "rump", "spots", "mask", "forked_tail")


def sample_bird_traits(rng: np.random.Generator) -> Traits:
    """A made-up songbird: any beak, mostly horn-coloured, and zero to two markings."""
    fields = {"beak": str(rng.choice(list(_BEAK_WORDS)))}
    roll = rng.random()
    if roll < 0.15:
        fields["beak_colour"] = YELLOW
    elif roll < 0.22:
        fields["beak_colour"] = RED
    for mark in rng.permutation(_MARKS)[: int(rng.choice([0, 1, 1, 2]))]:
        colour_mark = mark in ("crest", "throat", "rump")
        fields[str(mark)] = list(_COLOURS)[int(rng.integers(4))] if colour_mark else True
    return Traits(**fields)


def _part_phrases(t: Traits, rng: np.random.Generator) -> list[str]:
    pick = lambda *options: str(options[int(rng.integers(len(options)))])  # noqa: E731
    phrases = []
    if t.beak_colour != HORN:
        phrases.append(pick(f"a {_COLOURS[t.beak_colour]} bill", f"a bright {_COLOURS[t.beak_colour]} beak"))
    if t.crest is not None:
        phrases.append(pick(f"a {_COLOURS[t.crest]} crest", f"a {_COLOURS[t.crest]} tuft on its head"))
    if t.throat is not None:
        phrases.append(pick(f"a {_COLOURS[t.throat]} throat", f"a {_COLOURS[t.throat]} patch under the bill"))
    if t.eye_ring:
        phrases.append(pick("a white eye ring", "white around the eye"))
    if t.wing_bars:
        phrases.append(pick("white wing bars", "two white stripes on the wing"))
    if t.rump is not None:
        phrases.append(pick(f"a {_COLOURS[t.rump]} rump", f"a {_COLOURS[t.rump]} patch above the tail"))
    if t.spots:
        phrases.append(pick("a spotted breast", "dark spots on its breast"))
    if t.mask:
        phrases.append(pick("a black mask", "a black stripe through the eye"))
    if t.forked_tail:
        phrases.append(pick("a forked tail", "a long forked tail"))
    return phrases


def bird_caption(t: Traits, rng: np.random.Generator) -> str:
    """A kind word and one or two parts; the beak shape stands in when nothing else shows."""
    kind = _KIND[t.beak] if isinstance(_KIND[t.beak], str) else str(rng.choice(_KIND[t.beak]))
    kind = kind if rng.random() < 0.6 else str(rng.choice(["bird", "songbird", "small bird"]))
    marks = _part_phrases(t, rng)
    parts = [marks[i] for i in rng.permutation(len(marks))[: int(rng.integers(1, 3))]] if marks else []
    if not parts or rng.random() < 0.3:
        parts.append(str(rng.choice(_BEAK_WORDS[t.beak])))
    return f"a {kind} with " + " and ".join(parts) + "."


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
    "birds": Domain("birds", sample_bird_traits,
                    lambda traits, rng: render_bird(traits, rng, size=int(rng.choice(SPECIMEN_SIZES))),
                    bird_caption, letterbox=False),
}
# the world each one is tested on: made-up birds are scored on the named look-alike classes
TEST_WORLD = {"streets": "streets", "pedestrians": "pedestrians", "specimens": "specimens", "birds": "specimens"}
ZERO_SHOT = {"streets": street_zero_shot, "pedestrians": pedestrian_zero_shot, "specimens": specimen_zero_shot}
