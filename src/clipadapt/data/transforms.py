"""Image preprocessing.

crop (SPEC 1): train = random resized crop + flip; test = resize the short side +
centre crop; both bicubic, normalised with the model's mean/std.
letterbox (SPEC 2, pedestrian crops): pad to a square with black borders and resize,
so nothing of a tall crop is cut; train adds Pad(10) + RandomCrop + flip.
"""

from __future__ import annotations

from torchvision import transforms as T

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = T.InterpolationMode.BICUBIC


def train_transform(image_size: int, mean=CLIP_MEAN, std=CLIP_STD, scale: tuple[float, float] = (0.08, 1.0)):
    """RandomResizedCrop(image_size, scale, bicubic) + horizontal flip + normalise."""
    return T.Compose([
        T.RandomResizedCrop(image_size, scale=scale, interpolation=BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def eval_transform(image_size: int, mean=CLIP_MEAN, std=CLIP_STD):
    """Resize the short side to image_size (bicubic) + centre crop + normalise."""
    return T.Compose([T.Resize(image_size, interpolation=BICUBIC), T.CenterCrop(image_size), T.ToTensor(), T.Normalize(mean, std)])


class LetterBox:
    """Pad a PIL image to a square (image centred, black borders), then resize to `size`."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image):
        from PIL import Image

        side = max(image.size)
        square = Image.new("RGB", (side, side))
        square.paste(image.convert("RGB"), ((side - image.width) // 2, (side - image.height) // 2))
        return square.resize((self.size, self.size), Image.BICUBIC)


def letterbox_train_transform(image_size: int, mean=CLIP_MEAN, std=CLIP_STD, pad: int = 10):
    """LetterBox + Pad(pad) + RandomCrop(image_size) + horizontal flip + normalise (SPEC 2)."""
    return T.Compose([LetterBox(image_size), T.Pad(pad), T.RandomCrop(image_size), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(mean, std)])


def letterbox_eval_transform(image_size: int, mean=CLIP_MEAN, std=CLIP_STD):
    """LetterBox + normalise."""
    return T.Compose([LetterBox(image_size), T.ToTensor(), T.Normalize(mean, std)])


def transform_for(preprocess: str, train: bool, image_size: int, mean=CLIP_MEAN, std=CLIP_STD):
    """The transform of a preprocessing kind ("crop" | "letterbox") for training or testing."""
    if preprocess == "letterbox":
        return letterbox_train_transform(image_size, mean, std) if train else letterbox_eval_transform(image_size, mean, std)
    return train_transform(image_size, mean, std) if train else eval_transform(image_size, mean, std)


def describe_transform(kind: str, image_size: int, mean, std, preprocess: str = "crop") -> dict:
    """JSON-able identity of a preprocessing (part of feature-store keys and run cards)."""
    steps = {
        ("crop", "train"): "RandomResizedCrop(scale=(0.08, 1), bicubic) + HorizontalFlip",
        ("crop", "test"): "Resize(short side, bicubic) + CenterCrop",
        ("letterbox", "train"): "LetterBox(black, bicubic) + Pad(10) + RandomCrop + HorizontalFlip",
        ("letterbox", "test"): "LetterBox(black, bicubic)",
    }
    return {"kind": kind, "steps": steps[(preprocess, kind)], "image_size": int(image_size),
            "mean": [round(float(m), 8) for m in mean], "std": [round(float(s), 8) for s in std]}
