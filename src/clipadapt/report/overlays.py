"""One entry point for attention overlays of any method that has them: the web service
shows these next to its predictions.

Each kind of maps a method says it has (`Method.explain_maps`) comes from its own module
("attention", CLIP-MHAdapter: `report.attention`; "parts", PromptPAR: `report.part_maps`;
"saliency", microCLIP: `report.soap_maps`); this module turns them
into pictures of the image as the model saw it, labelled so a person knows what each
picture is.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from clipadapt.engine.sources import make_transform
from clipadapt.report.attention import (
    DISPLAY_SIZE, heads_mean, heatmap, maps_kind, mhadapter_attention, model_view, overlay,
)
from clipadapt.report.explain import blocky
from clipadapt.report.part_maps import part_attention
from clipadapt.report.soap_maps import soap_maps

# A map and whether it is a mask (drawn as crisp patches, not min-max normalised).
Map = tuple[np.ndarray, bool]
MapsFn = Callable[[object, torch.Tensor], dict[str, Map]]


def _mhadapter(method, batch: torch.Tensor) -> dict[str, Map]:
    # Figure 3 of the paper: heads-averaged attention each patch receives, per attribute
    return {name: (heads_mean(maps), False) for name, maps in mhadapter_attention(method, batch).items()}


def _promptpar(method, batch: torch.Tensor) -> dict[str, Map]:
    parts = part_attention(method, batch)
    return {f"part {g + 1} ({label})": (parts.maps[:, g], False) for g, label in enumerate(parts.labels)}


def _microclip(method, batch: torch.Tensor) -> dict[str, Map]:
    maps = soap_maps(method, batch)
    found = {"SOAP attention": (maps.attention, False)}
    if maps.mask is not None:
        found["foreground mask (Normalised Cut)"] = (maps.mask, True)
    return found


# one maker per kind of maps (`report.attention.maps_kind`), never per method name
MAP_MAKERS: dict[str, MapsFn] = {"attention": _mhadapter, "parts": _promptpar, "saliency": _microclip}


def has_overlays(method) -> bool:
    """True when `method` (a loaded method) has maps to overlay: part maps need the part
    tokens switched on (PromptPAR's regions), saliency maps the SOAP pooling (microCLIP's)."""
    kind = maps_kind(method)
    if kind == "parts":
        return bool(method.layout.groups) and method.attn_mask is not None
    if kind == "saliency":
        return method.fusion is not None
    return kind in MAP_MAKERS


def attention_overlays(method, images: Sequence[Image.Image], size: int = DISPLAY_SIZE) -> list[dict[str, Image.Image]]:
    """Per image, {label: overlay}: every map of the method over the view the model saw,
    `size` px. Attention maps are upsampled bilinearly and min-max normalised; masks
    keep their 0/1 patches. Labels: attribute names (CLIP-MHAdapter), "part g (rows
    a-b)" (PromptPAR), "SOAP attention" and "foreground mask (Normalised Cut)" (microCLIP).
    Call it only when `has_overlays(method)`.
    """
    transform = make_transform(method.backbone, train=False)
    batch = torch.stack([transform(image) for image in images])
    maps = MAP_MAKERS[maps_kind(method)](method, batch)
    views = [model_view(image, size, method.backbone.transform_kind(False)) for image in images]
    return [{label: overlay(view, blocky(per_image[i], size) if is_mask else heatmap(per_image[i], (size, size)))
             for label, (per_image, is_mask) in maps.items()}
            for i, view in enumerate(views)]
