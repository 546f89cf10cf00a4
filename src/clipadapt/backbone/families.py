"""Backbone families: which image tower a model name builds, and which methods run on it.

A family is a kind of image tower behind the same small interface (embed, blocks, taps,
pool, text encode): CLIP's own ViT (`ClipBackbone`) or a timm tower (`TimmTowerBackbone`).
Each method needs some of it; where a combination cannot be made faithful yet, it is
refused with one line that says why and what to use instead (docs/backbones.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import open_clip

from clipadapt.errors import ClipAdaptError

ALL_METHODS = ("majority", "zeroshot", "linear_probe", "clip_adapter", "coop", "mhadapter", "promptpar", "microclip")


@dataclass(frozen=True)
class Family:
    """One kind of image tower: what it is, the methods refused on it (with why), and what
    a method's parts mean on it where that differs from CLIP (`notes`)."""

    name: str
    description: str
    refused: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def supported(self) -> list[str]:
        return [m for m in ALL_METHODS if m not in self.refused]


FAMILIES = {
    "clip": Family("clip", "open_clip's ViT with a [CLS] token: OpenAI (QuickGELU), LAION, DataComp, DFN, MetaCLIP"),
    "siglip": Family(
        "siglip", "SigLIP / SigLIP2: timm ViT, no [CLS], attention-pool (MAP) head, text pooled at the last token",
        notes={"microclip": "patch features = the MAP head's value path per patch (what the pool outputs when that "
                            "patch is its only key); the global token = the MAP output",
               "promptpar": "global token = the MAP pool of every output token; other tokens leave through the MAP "
                            "head's value path"}),
    "eva": Family(
        "eva", "EVA02-CLIP: timm EVA blocks, rotary position embeddings, SwiGLU, [CLS] pooling",
        notes={"microclip": "patch features = the last EVA block on its value path (rotary positions drop out)",
               "promptpar": "prompts and part tokens get no rotary position (identity rotation); patches keep theirs"}),
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


def backbones_by_family() -> list[str]:
    """Lines for `clipadapt list backbones`: per family, what it is, the methods it runs
    and those refused (why: docs/backbones.md), then its model names; last, the names
    of towers clipadapt does not run."""
    from clipadapt.backbone.factory import list_backbones

    names: dict[str | None, list[str]] = {}
    for name in list_backbones():
        names.setdefault(family_of(name), []).append(name)
    lines = []
    for family in FAMILIES.values():
        refused = f"; refused: {', '.join(family.refused)}" if family.refused else ""
        lines += [f"{family.name}: {family.description}",
                  f"  methods: {', '.join(family.supported())}{refused}",
                  *(f"  {method}: {note}" for method, note in family.notes.items()),
                  "  " + " ".join(names.get(family.name, [])), ""]
    lines += ["not supported (no ViT image tower clipadapt can run):", "  " + " ".join(names.get(None, []))]
    return lines


def check_method(method: str, backbone) -> None:
    """Raise one clear ClipAdaptError when `method` is refused on `backbone`'s family."""
    family = FAMILIES.get(getattr(backbone, "family", "clip"))
    if family is None or method not in family.refused:
        return
    raise ClipAdaptError(f"{method} does not run on {backbone.name} (family {family.name}): "
                         f"{family.refused[method]}. Use a clip-family backbone (e.g. ViT-B-16-quickgelu) for "
                         f"{method}, or one of {', '.join(family.supported())} on this one.")
