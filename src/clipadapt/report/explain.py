"""`clipadapt explain`: attention pictures of a run for some images, one writer per kind of
maps a method says it has (`Method.explain_maps`).

CLIP-MHAdapter: per attribute the attention each patch receives (Figure 3), heads
averaged and per head. PromptPAR: each part token's attention over its strip.
microCLIP: SOAP's attention over the patches and the Normalised-Cut foreground mask.
Every method also gets `<image>_panel.png`: the view the model saw, every map, the
predictions, and a colour bar (cividis: readable with every common colour-vision
deficiency, and in grey print).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from clipadapt.data.images import load_image
from clipadapt.engine.card import RunCard, as_card
from clipadapt.engine.checkpoint import load_run, read_card
from clipadapt.io import atomic_write
from clipadapt.engine.sources import make_transform
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import METHODS
from clipadapt.report.attention import (
    BATCH_SIZE, DISPLAY_SIZE, explain_batch, heatmap, maps_kind, model_view, overlay,
)
from clipadapt.report.figures import explain_panel
from clipadapt.report.part_maps import part_attention
from clipadapt.report.soap_maps import soap_maps


@dataclass(frozen=True)
class Batch:
    """One batch to explain: the images, their preprocessed tensor, output stems and
    display names, and the drawing options."""

    images: list[Image.Image]
    tensor: torch.Tensor
    stems: list[str]
    names: list[str]
    per_head: bool
    size: int
    alpha: float


Writer = Callable[[object, dict, Batch, Path], list[Path]]


def safe_stems(paths: Sequence[Path]) -> list[str]:
    """File-name stems for outputs: odd characters replaced, and repeated stems (same
    name in different folders) numbered so no output overwrites another."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem) or "image"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def save_png(image: Image.Image, path: Path) -> Path:
    """Write a PIL image as PNG, atomically."""
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    return path


def blocky(grid_map: np.ndarray, size: int) -> np.ndarray:
    """A [h, w] map enlarged to size x size with nearest-neighbour cells: a mask stays a
    mask (0/1 patches), where bilinear upsampling would blur its edges into fractions."""
    cells = Image.fromarray(np.asarray(grid_map, dtype=np.float32), mode="F")
    return np.asarray(cells.resize((size, size), Image.Resampling.NEAREST), dtype=np.float32)


def _title(name: str, text: str) -> str:
    return textwrap.fill(f"{name}: {text}", width=110)


# ------------------------------------------------------------------ one writer per method
def write_mhadapter(method, card: dict, batch: Batch, out_dir: Path) -> list[Path]:
    """Per image and attribute `<stem>_<attribute>_mean.png` (heads averaged) and, with
    per_head, `<stem>_<attribute>_head<k>.png`; plus the panel titled with predictions."""
    result = explain_batch(method, batch.tensor)
    written: list[Path] = []
    for i, image in enumerate(batch.images):
        view, stem, size = model_view(image, batch.size, method.backbone.transform_kind(False)), batch.stems[i], batch.size
        panels = []
        for attr in method.task.attributes:
            per_head_maps = result.attention[attr.name][i]
            mean_overlay = overlay(view, heatmap(per_head_maps.mean(axis=0), (size, size)), batch.alpha)
            written.append(save_png(mean_overlay, out_dir / f"{stem}_{attr.name}_mean.png"))
            if batch.per_head:
                for k, head_map in enumerate(per_head_maps):
                    head_overlay = overlay(view, heatmap(head_map, (size, size)), batch.alpha)
                    written.append(save_png(head_overlay, out_dir / f"{stem}_{attr.name}_head{k}.png"))
            p = result.probabilities[attr.name][i]
            best = int(p.argmax())
            panels.append((f"{attr.name}: {attr.classes[best]} ({100 * p[best]:.1f}%)", mean_overlay))
        written.append(explain_panel(view, panels, out_dir / f"{stem}_panel.png", title=batch.names[i]))
    return written


def write_promptpar(method, card: dict, batch: Batch, out_dir: Path) -> list[Path]:
    """Per image `<stem>_part<g>.png` (g = 1..G, top strip first): part g's attention over
    its strip; plus the panel titled with the attributes predicted present."""
    parts = part_attention(method, batch.tensor)
    with torch.no_grad():
        logits = method.forward_images(batch.tensor.to(next(method.parameters()).device))
    present = np.stack([torch.softmax(z.float(), -1)[:, 1].cpu().numpy() for z in logits], axis=1)  # [B, A]
    thresholds = method.thresholds()  # the run's decision threshold of each attribute
    written: list[Path] = []
    for i, image in enumerate(batch.images):
        view, stem = model_view(image, batch.size, method.backbone.transform_kind(False)), batch.stems[i]
        panels = []
        for g, label in enumerate(parts.labels):
            picture = overlay(view, heatmap(parts.maps[i, g], (batch.size, batch.size)), batch.alpha)
            written.append(save_png(picture, out_dir / f"{stem}_part{g + 1}.png"))
            panels.append((f"part {g + 1}: {label}\n{100 * parts.patch_share[i, g]:.0f}% on patches",
                           picture))
        found = [f"{a.name} {100 * p:.0f}%" for a, p, t in zip(method.task.attributes, present[i], thresholds) if p > t]
        summary = "present: " + (", ".join(found) if found else "nothing above its threshold")
        written.append(explain_panel(view, panels, out_dir / f"{stem}_panel.png", title=_title(batch.names[i], summary),
                                     bar_label="attention within the region (min-max)"))
    return written


def write_microclip(method, card: dict, batch: Batch, out_dir: Path) -> list[Path]:
    """Per image `<stem>_soap.png` (SOAP attention over the patches) and, when the
    settings use a Normalised Cut, `<stem>_mask.png` (foreground patches bright); plus
    the panel titled with the predicted class."""
    maps = soap_maps(method, batch.tensor)
    attr = method.task.attributes[0]
    written: list[Path] = []
    for i, image in enumerate(batch.images):
        view, stem = model_view(image, batch.size, method.backbone.transform_kind(False)), batch.stems[i]
        attention = overlay(view, heatmap(maps.attention[i], (batch.size, batch.size)), batch.alpha)
        written.append(save_png(attention, out_dir / f"{stem}_soap.png"))
        panels = [(f"SOAP attention\n(null token {100 * maps.null_weight[i]:.0f}%)", attention)]
        if maps.mask is not None:
            mask = overlay(view, blocky(maps.mask[i], batch.size), batch.alpha)
            written.append(save_png(mask, out_dir / f"{stem}_mask.png"))
            panels.append((f"Normalised-Cut foreground\n({int(maps.mask[i].sum())} of {maps.mask[i].size} patches)", mask))
        p = maps.probabilities[i]
        best = int(p.argmax())
        title = _title(batch.names[i], f"{attr.name} = {attr.classes[best]} ({100 * p[best]:.1f}%)")
        written.append(explain_panel(view, panels, out_dir / f"{stem}_panel.png", title=title,
                                     bar_label="attention (min-max); foreground = 1"))
    return written


# one writer per kind of maps (`report.attention.maps_kind`), never per method name
WRITERS: dict[str, Writer] = {"attention": write_mhadapter, "parts": write_promptpar, "saliency": write_microclip}


def explained_methods() -> list[str]:
    """Registered methods `explain` can draw: those whose kind of maps has a writer (the
    three papers' methods, and any method registered with `explain_maps` or `attention_maps`)."""
    return [name for name in METHODS.names() if maps_kind(METHODS.get(name)) in WRITERS]


def writer_for(method_name: str) -> Writer:
    """The writer of a method, or a ClipAdaptError naming those that have one."""
    kind = maps_kind(METHODS.get(method_name)) if method_name in METHODS else None
    if kind in WRITERS:
        return WRITERS[kind]
    raise ClipAdaptError(
        f"explain supports {', '.join(explained_methods())}; this run's method is '{method_name}', which has no "
        "attention over image patches to show. Train one of those methods to see attention maps."
    )


# ------------------------------------------------------------------ the command
def explain_images(run_dir: Path, image_paths: Sequence[Path | str], out_dir: Path, per_head: bool = True,
                   device: str | torch.device = "cpu", size: int = DISPLAY_SIZE, alpha: float = 0.5) -> list[Path]:
    """Attention pictures of a run for some images (see the module doc for what each
    method writes); `per_head` applies to CLIP-MHAdapter.

    Returns:
        The written paths, in writing order.

    Raises:
        ClipAdaptError: not a run folder, a method without attention maps, no images,
            or an unreadable image (named).
    """
    card = read_card(run_dir)
    write = writer_for(card.method)  # before loading any weights
    paths = [Path(p) for p in image_paths]
    if not paths:
        raise ClipAdaptError("No images to explain; pass image files, folders or glob patterns.")
    method, card = load_run(run_dir, device=device)
    transform = make_transform(method.backbone, train=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = safe_stems(paths)
    written: list[Path] = []
    for start in range(0, len(paths), BATCH_SIZE):
        chunk = paths[start:start + BATCH_SIZE]
        images = [load_image(p) for p in chunk]
        batch = Batch(images, torch.stack([transform(im) for im in images]), stems[start:start + len(chunk)],
                      [p.name for p in chunk], per_head, size, alpha)
        written += write(method, card, batch, out_dir)
    return written
