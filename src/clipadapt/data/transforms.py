"""Image preprocessing.

crop (SPEC 1): train = random resized crop + flip; test = resize the short side +
centre crop; both bicubic, normalised with the model's mean/std.
letterbox (SPEC 2, pedestrian crops): pad to a square with black borders and resize,
so nothing of a tall crop is cut; train adds Pad(10) + RandomCrop + flip.
resize (the PromptPAR authors' validation transform): resize straight to a square,
whatever the aspect ratio; train adds Pad(10) + RandomCrop + flip as theirs does.
Each resizes with the chosen interpolation: bicubic (CLIP's) or bilinear (torchvision's
default, which the PromptPAR authors' transforms use).
"""

from __future__ import annotations

from torchvision import transforms as T

from clipadapt.data.pil_transforms import PREPROCESSING, pad_to_square

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = T.InterpolationMode.BICUBIC
INTERPOLATIONS = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}


def interpolation_mode(name: str) -> T.InterpolationMode:
    """torchvision's mode for "bicubic" | "bilinear"."""
    if name not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {name!r}; use one of {sorted(INTERPOLATIONS)}")
    return INTERPOLATIONS[name]


def train_transform(image_size: int, mean=CLIP_MEAN, std=CLIP_STD, scale: tuple[float, float] = (0.08, 1.0),
                    interpolation: str = "bicubic"):
    """RandomResizedCrop(image_size, scale) + horizontal flip + normalise."""
    return T.Compose([
        T.RandomResizedCrop(image_size, scale=scale, interpolation=interpolation_mode(interpolation)),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def eval_transform(image_size: int, mean=CLIP_MEAN, std=CLIP_STD, interpolation: str = "bicubic"):
    """Resize the short side to image_size + centre crop + normalise."""
    return T.Compose([T.Resize(image_size, interpolation=interpolation_mode(interpolation)), T.CenterCrop(image_size),
                      T.ToTensor(), T.Normalize(mean, std)])


class LetterBox:
    """Pad a PIL image to a square (image centred, black borders), then resize to `size`.

    The resize is torchvision's `Resize((size, size))`, the very call the PromptPAR
    authors' transform makes on their pre-padded crops, so a crop letter-boxed here and
    one padded the same way on disk give the same pixels."""

    def __init__(self, size: int, interpolation: str = "bicubic"):
        self.size = size
        self.resize = T.Resize((size, size), interpolation=interpolation_mode(interpolation))

    def __call__(self, image):
        return self.resize(pad_to_square(image))


def _shape_step(preprocess: str, image_size: int, interpolation: str):
    """The first, geometric step of the letterbox and resize kinds."""
    if preprocess == "letterbox":
        return LetterBox(image_size, interpolation)
    return T.Resize((image_size, image_size), interpolation=interpolation_mode(interpolation))


def shaped_train_transform(preprocess: str, image_size: int, mean=CLIP_MEAN, std=CLIP_STD, pad: int = 10,
                           interpolation: str = "bicubic"):
    """LetterBox or square Resize + Pad(pad) + RandomCrop(image_size) + horizontal flip + normalise (SPEC 2)."""
    return T.Compose([_shape_step(preprocess, image_size, interpolation), T.Pad(pad), T.RandomCrop(image_size),
                      T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


def shaped_eval_transform(preprocess: str, image_size: int, mean=CLIP_MEAN, std=CLIP_STD, interpolation: str = "bicubic"):
    """LetterBox or square Resize + normalise."""
    return T.Compose([_shape_step(preprocess, image_size, interpolation), T.ToTensor(), T.Normalize(mean, std)])


def transform_for(preprocess: str, train: bool, image_size: int, mean=CLIP_MEAN, std=CLIP_STD,
                  interpolation: str = "bicubic"):
    """The transform of a preprocessing kind ("crop" | "letterbox" | "resize") for training or testing."""
    if preprocess not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {preprocess!r}; use one of {PREPROCESSING}")
    if preprocess != "crop":
        return (shaped_train_transform(preprocess, image_size, mean, std, interpolation=interpolation) if train
                else shaped_eval_transform(preprocess, image_size, mean, std, interpolation))
    return (train_transform(image_size, mean, std, interpolation=interpolation) if train
            else eval_transform(image_size, mean, std, interpolation))


def describe_transform(kind: str, image_size: int, mean, std, preprocess: str = "crop",
                       interpolation: str = "bicubic") -> dict:
    """JSON-able identity of a preprocessing (part of feature-store keys and run cards)."""
    steps = {
        ("crop", "train"): "RandomResizedCrop(scale=(0.08, 1), {i}) + HorizontalFlip",
        ("crop", "test"): "Resize(short side, {i}) + CenterCrop",
        ("letterbox", "train"): "LetterBox(black, {i}) + Pad(10) + RandomCrop + HorizontalFlip",
        ("letterbox", "test"): "LetterBox(black, {i})",
        ("resize", "train"): "Resize(square, {i}) + Pad(10) + RandomCrop + HorizontalFlip",
        ("resize", "test"): "Resize(square, {i})",
    }
    return {"kind": kind, "steps": steps[(preprocess, kind)].format(i=interpolation), "image_size": int(image_size),
            "mean": [round(float(m), 8) for m in mean], "std": [round(float(s), 8) for s in std]}
