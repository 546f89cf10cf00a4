"""The preprocessing of the recipe (SPEC 1): train = random resized crop + flip; test =
resize the short side + centre crop; both bicubic, normalised with the model's mean/std."""

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


def describe_transform(kind: str, image_size: int, mean, std) -> dict:
    """JSON-able identity of a preprocessing (part of feature-store keys and run cards)."""
    steps = {
        "train": "RandomResizedCrop(scale=(0.08, 1), bicubic) + HorizontalFlip",
        "test": "Resize(short side, bicubic) + CenterCrop",
    }
    return {"kind": kind, "steps": steps[kind], "image_size": int(image_size),
            "mean": [round(float(m), 8) for m in mean], "std": [round(float(s), 8) for s in std]}
