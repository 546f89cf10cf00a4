"""Backbone families: which image tower a model name builds.

A family is a kind of image tower behind the same small interface (embed, blocks, taps,
pool, text encode): CLIP's own ViT (`ClipBackbone`) or a timm tower (`TimmTowerBackbone`).
Each method needs some of it and says itself which families it runs on (a combination
that cannot be made faithful yet is refused by the method, with one line that says why:
`Method.refused_families`, docs/backbones.md); the backbone layer never imports methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import open_clip


@dataclass(frozen=True)
class Family:
    """One kind of image tower: its name and what it is. Which methods run on it is said
    by each method (`Method.refused_families`, `Method.family_notes`): the backbone
    never knows the methods."""

    name: str
    description: str


FAMILIES = {
    "clip": Family("clip", "open_clip's ViT with a [CLS] token: OpenAI (QuickGELU), LAION, DataComp, DFN, MetaCLIP"),
    "siglip": Family(
        "siglip", "SigLIP / SigLIP2: timm ViT, no [CLS], attention-pool (MAP) head, text pooled at the last token"),
    "eva": Family("eva", "EVA02-CLIP: timm EVA blocks, rotary position embeddings, SwiGLU, [CLS] pooling"),
}


def family_of(name: str) -> str | None:
    """The family an open_clip model name builds ("clip" | "siglip" | "eva"), from its
    config alone (nothing is built); None for towers clipadapt does not run (ResNets,
    ConvNeXt, other timm towers)."""
    if name.startswith(("hf-hub:", "coca")):  # CoCa: a captioning decoder on top; not a CLIP
        return None
    cfg = open_clip.get_model_config(name) or {}
    vision = cfg.get("vision_cfg", {})
    timm_name = vision.get("timm_model_name")
    if timm_name:
        if (timm_name.startswith("eva") or "_eva" in timm_name) and vision.get("timm_pool") != "map":
            return "eva"
        return "siglip" if "siglip" in timm_name and vision.get("timm_pool") == "map" else None
    if isinstance(vision.get("layers"), int) and vision.get("patch_size") and not vision.get("attentional_pool"):
        return "clip" if vision.get("pool_type", "tok") == "tok" and not vision.get("final_ln_after_pool") else None
    return None


def backbones_by_family(methods: Sequence = ()) -> list[str]:
    """Lines for `clipadapt list backbones`: per family, what it is, the methods it runs
    and those refused (why: docs/backbones.md), what a method's parts mean there, then its
    model names; last, the names of towers clipadapt does not run. `methods`: the method
    classes (the CLI passes the registry's), each saying what it fits (`name`,
    `refused_families`, `family_notes`)."""
    from clipadapt.backbone.model_names import list_backbones

    names: dict[str | None, list[str]] = {}
    for name in list_backbones():
        names.setdefault(family_of(name), []).append(name)
    lines = []
    for family in FAMILIES.values():
        runs = [m.name for m in methods if family.name not in m.refused_families]
        refused = [m.name for m in methods if family.name in m.refused_families]
        lines += [f"{family.name}: {family.description}",
                  f"  methods: {', '.join(runs)}" + (f"; refused: {', '.join(refused)}" if refused else ""),
                  *(f"  {m.name}: {m.family_notes[family.name]}" for m in methods if family.name in m.family_notes),
                  "  " + " ".join(names.get(family.name, [])), ""]
    lines += ["not supported (no ViT image tower clipadapt can run):", "  " + " ".join(names.get(None, []))]
    return lines
