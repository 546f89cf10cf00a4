"""How far a lossy image pass (bf16, int8) strays from fp32, measured on the user's images.

The lossy paths are opt-ins (`clipadapt predict --precision`); their agreement depends
on the model and the images, so it is measured on the first batch of the job and
printed, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipadapt.errors import ClipAdaptError


@dataclass
class Agreement:
    """fp32 vs `precision` on `images` images: cosine of CLIP's image embedding (mean and
    worst) and the share of (image, attribute) predictions that are the same class."""

    precision: str
    images: int
    cosine_mean: float
    cosine_min: float
    same_prediction: float

    def describe(self) -> str:
        return (f"precision {self.precision}: measured against fp32 on the first {self.images} image(s): embedding "
                f"cosine mean {self.cosine_mean:.5f} (worst {self.cosine_min:.5f}), same predicted class "
                f"{100 * self.same_prediction:.1f}%")


def check_precision_applies(method, precision: str) -> None:
    """A lossy precision changes the frozen backbone pass only: refuse methods whose image
    path is their own (prompts or trained LayerNorms inside the tower)."""
    if precision != "fp32" and not method.needs().frozen_image_path:
        raise ClipAdaptError(f"--precision {precision} speeds up the frozen backbone pass, but method '{method.name}' "
                             "runs its own image path (prompts or trained layers inside the tower); use fp32.")


@torch.inference_mode()
def measure_agreement(method, images: torch.Tensor) -> Agreement:
    """Run `images` through `method` at the backbone's current (lossy) precision and at fp32;
    the backbone's precision is left as it was."""
    backbone = method.backbone
    lossy = backbone.precision
    try:
        low = (backbone.forward_features(images).embedding, method.forward_images(images))
        backbone.precision = "fp32"
        exact = (backbone.forward_features(images).embedding, method.forward_images(images))
    finally:
        backbone.precision = lossy
    cos = F.cosine_similarity(low[0].float(), exact[0].float(), dim=-1)
    same = torch.cat([(a.argmax(-1) == b.argmax(-1)).float() for a, b in zip(low[1], exact[1])])
    return Agreement(lossy, len(images), float(cos.mean()), float(cos.min()), float(same.mean()))
