"""Which open_clip weights tag a local weights file is a copy of, and what that tag
says about preprocessing.

open_clip keeps, per (model, tag), the normalisation and resize rule the weights were
trained with (e.g. LAION's ViT-L-14 `laion2b_s32b_b82k`: mean = std = 0.5; DFN's
ViT-H-14 `dfn5b`: "squash" resizing and QuickGELU). Loading the same weights from a
file with the model's defaults would silently feed them OpenAI's statistics, so a file
names its tag (`backbone.tag`) or is recognised by its name: the tag in the file's
name, or the tag's Hugging Face repository in the hub cache folder it sits in
(`models--org--repo/snapshots/...`). Other folders of the path are not read: a folder
called "openai-experiments" says nothing about the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import open_clip

from clipadapt.errors import ClipAdaptError

# The fields of a tag's config that decide how images are prepared and the activation.
PREPROCESSING_FIELDS = ("mean", "std", "interpolation", "resize_mode")


def _squeeze(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def recognise_tag(name: str, path: Path) -> str | None:
    """The one open_clip tag of `name` whose name appears in the file's name or whose hub
    repository names the hub cache folder holding it (case, '-' and '_' ignored); None
    when none or several do."""
    path = Path(path).expanduser()
    hub_folders = [p.name for p in path.parents if p.name.startswith("models--")]
    where = _squeeze(" ".join([path.stem, *hub_folders]))
    found = set()
    for tag in open_clip.list_pretrained_tags_by_model(name):
        repo = (open_clip.get_pretrained_cfg(name, tag).get("hf_hub") or "").strip("/").split("/")[-1]
        if _squeeze(tag) in where or (repo and _squeeze(repo) in where):
            found.add(tag)
    # a tag that is part of a longer matching one (e.g. "laion2b" in "laion2b_s32b_b82k") gives way to it
    found = {t for t in found if not any(t != u and _squeeze(t) in _squeeze(u) for u in found)}
    return found.pop() if len(found) == 1 else None


def tag_config(name: str, tag: str) -> dict:
    """open_clip's config of weights `tag` for model `name`; an unknown tag is one clear error."""
    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        raise ClipAdaptError(f"backbone.tag '{tag}' is not an open_clip weights tag of '{name}' "
                             f"(tags: {tags or 'none'}).")
    return dict(open_clip.get_pretrained_cfg(name, tag))


def tag_preprocessing(name: str, tag: str) -> dict:
    """The preprocessing fields (mean, std, interpolation, resize_mode) that tag's weights
    were trained with, plus quick_gelu (their activation)."""
    cfg = tag_config(name, tag)
    out = {k: (tuple(cfg[k]) if isinstance(cfg[k], (list, tuple)) else cfg[k]) for k in PREPROCESSING_FIELDS if k in cfg}
    out["quick_gelu"] = bool(cfg.get("quick_gelu", False))
    return out
