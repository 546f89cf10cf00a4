"""Attention maps of CLIP-MHAdapter (Figure 3 of the paper) and `clipadapt explain`.

The recipe (SPEC 1, "Figure 3"): take the adapter's self-attention [heads, N, N]
(rows = queries, columns = keys), average the heads, take the attention each patch
RECEIVES (the mean of its column over all queries), reshape to the patch grid,
upsample bilinearly to the image, min-max normalise and overlay it on the image the
model saw (the centre crop of the test transform).

The column mean is linear, so the head mean of the per-head received maps equals the
received map of the head-averaged attention; per-head maps therefore come for free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clipadapt.data.images import load_image
from clipadapt.engine.checkpoint import load_run, read_card
from clipadapt.engine.io import atomic_write
from clipadapt.engine.sources import make_transform
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import METHODS
from clipadapt.metrics.plots import SEQUENTIAL_CMAP
from clipadapt.report.figures import explain_panel

DISPLAY_SIZE = 224  # px of written overlays: the paper's input size, readable for tiny models too
BATCH_SIZE = 16


# ------------------------------------------------------------------ the maps
def explainable_methods() -> list[str]:
    """Registered methods with attention to show: those whose class provides
    `attention_maps(features)` -> per attribute [B, heads, N, N] over the N patches
    (CLIP-MHAdapter; a method registered from outside joins by providing it too)."""
    return [name for name in METHODS.names() if callable(getattr(METHODS.get(name), "attention_maps", None))]


def require_attention(method_name: str) -> None:
    """Raise a ClipAdaptError unless method `method_name` has attention maps to show."""
    supported = explainable_methods()
    if method_name not in supported:
        raise ClipAdaptError(
            f"explain supports {', '.join(supported)} (for now); this run's method is '{method_name}', "
            "which has no attention over image patches. Train a run with method.name=mhadapter to see attention maps."
        )


def received_attention(attention: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """Attention each patch receives, per head, on the patch grid.

    Args:
        attention: [B, heads, N, N] softmax weights, rows = queries, columns = keys.
        grid: (h, w) patch grid with h * w = N (tokens are in row-major patch order,
            the order of the backbone's flattened patch embedding).

    Returns:
        float32 [B, heads, h, w]: the column means (unnormalised).
    """
    h, w = grid
    b, heads, n_query, n_key = attention.shape
    if n_query != n_key or n_key != h * w:
        raise ValueError(f"attention of shape {tuple(attention.shape)} does not fit a {h}x{w} patch grid")
    return attention.detach().float().mean(dim=-2).reshape(b, heads, h, w).cpu().numpy()


def heads_mean(per_head: np.ndarray) -> np.ndarray:
    """[B, heads, h, w] -> [B, h, w]: the heads-averaged received attention."""
    return per_head.mean(axis=1)


@dataclass
class Explanation:
    """One forward pass of a batch: class probabilities and received attention,
    each keyed by attribute name."""

    probabilities: dict[str, np.ndarray]  # [B, K]
    attention: dict[str, np.ndarray]  # [B, heads, h, w]


@torch.no_grad()
def explain_batch(method, images: torch.Tensor) -> Explanation:
    """Probabilities and per-head received attention of a CLIP-MHAdapter for a batch of
    preprocessed images [B, 3, S, S], from a single backbone pass."""
    require_attention(method.name)
    method.eval()
    device = next(method.parameters()).device
    feats = method.backbone.forward_features(images.to(device), method.needs().tap_block)
    names = method.task.names
    probs = {n: torch.softmax(logits.float(), -1).cpu().numpy() for n, logits in zip(names, method(feats))}
    grid = method.backbone.grid
    maps = {n: received_attention(a, grid) for n, a in zip(names, method.attention_maps(feats))}
    return Explanation(probs, maps)


def mhadapter_attention(method, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per attribute, the attention each patch receives per head, [B, heads, h, w].

    Average over axis 1 (`heads_mean`) for the map of Figure 3.
    """
    return explain_batch(method, images).attention


# ------------------------------------------------------------------ pictures
def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant map (no patch stands out) becomes all zeros."""
    values = np.asarray(values, dtype=np.float32)
    low, span = float(values.min()), float(values.max() - values.min())
    return (values - low) / span if span > 1e-12 else np.zeros_like(values)


def upsample(grid_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to `size` = (height, width), as float32."""
    grid = torch.as_tensor(np.asarray(grid_map, dtype=np.float32))[None, None]
    return F.interpolate(grid, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()


def heatmap(grid_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [h, w] grid map upsampled bilinearly to `size` = (height, width), then min-max
    normalised (Figure 3's order): float32 [height, width] in [0, 1]."""
    return minmax(upsample(grid_map, size))


def model_view(image: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    """The part of `image` the model saw, at `size` x `size` px.

    The test transform resizes the short side and centre-crops a square, which keeps
    the centred square of side = short side; cropping that at full resolution and then
    resizing gives the same view, sharper than upsampling the model's input.
    """
    width, height = image.size
    side = min(width, height)
    left, top = round((width - side) / 2), round((height - side) / 2)
    return image.convert("RGB").crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.5, cmap: str = SEQUENTIAL_CMAP) -> Image.Image:
    """Blend a heat map in [0, 1] over `image`, through a colour-blind-safe colormap.

    `heat` of another shape than the image (e.g. the patch grid) is upsampled
    bilinearly first. Returns an RGB image of the same size as `image`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heat must be a 2-D map [h, w], got shape {heat.shape}")
    width, height = image.size
    if heat.shape != (height, width):
        heat = upsample(heat, (height, width))
    colours = matplotlib.colormaps[cmap](np.clip(heat, 0.0, 1.0))[..., :3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    blended = (1.0 - alpha) * base + alpha * colours
    return Image.fromarray(np.round(blended * 255.0).astype(np.uint8), mode="RGB")


def mean_attention(method, images: Sequence[Image.Image]) -> dict[str, np.ndarray]:
    """Heads-averaged received attention of every attribute for PIL images, through the
    test transform in batches: attribute -> [len(images), h, w]. One backbone pass
    serves all attributes (the HTML report's gallery uses this)."""
    transform = make_transform(method.backbone, train=False)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in method.task.names}
    for start in range(0, len(images), BATCH_SIZE):
        batch = torch.stack([transform(im) for im in images[start:start + BATCH_SIZE]])
        for name, maps in mhadapter_attention(method, batch).items():
            parts[name].append(heads_mean(maps))
    h, w = method.backbone.grid
    return {name: np.concatenate(maps) if maps else np.zeros((0, h, w), np.float32) for name, maps in parts.items()}


# ------------------------------------------------------------------ explain command
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


def _save_png(image: Image.Image, path: Path) -> Path:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    return path


def explain_images(run_dir: Path, image_paths: Sequence[Path | str], out_dir: Path, per_head: bool = True,
                   device: str | torch.device = "cpu", size: int = DISPLAY_SIZE, alpha: float = 0.5) -> list[Path]:
    """Attention overlays of a CLIP-MHAdapter run for some images.

    For every image and attribute writes `<stem>_<attribute>_mean.png` (heads averaged)
    and, with `per_head`, `<stem>_<attribute>_head<k>.png` (k = 0-based head index);
    plus `<stem>_panel.png`: the view the model saw, and per attribute the mean overlay
    titled with the predicted class and its probability.

    Returns:
        The written paths, in writing order.

    Raises:
        ClipAdaptError: not a run folder, a method without attention, no images, or an
            unreadable image (named).
    """
    require_attention(read_card(run_dir).get("method", "?"))  # before loading any weights
    paths = [Path(p) for p in image_paths]
    if not paths:
        raise ClipAdaptError("No images to explain; pass image files, folders or glob patterns.")
    method, _card = load_run(run_dir, device=device)
    transform = make_transform(method.backbone, train=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    stems = safe_stems(paths)
    for start in range(0, len(paths), BATCH_SIZE):
        chunk = [load_image(p) for p in paths[start:start + BATCH_SIZE]]
        result = explain_batch(method, torch.stack([transform(im) for im in chunk]))
        for i, image in enumerate(chunk):
            stem, view = stems[start + i], model_view(image, size)
            panels = []
            for attr in method.task.attributes:
                per_head_maps = result.attention[attr.name][i]
                mean_overlay = overlay(view, heatmap(per_head_maps.mean(axis=0), (size, size)), alpha)
                written.append(_save_png(mean_overlay, out_dir / f"{stem}_{attr.name}_mean.png"))
                if per_head:
                    for k, head_map in enumerate(per_head_maps):
                        head_overlay = overlay(view, heatmap(head_map, (size, size)), alpha)
                        written.append(_save_png(head_overlay, out_dir / f"{stem}_{attr.name}_head{k}.png"))
                p = result.probabilities[attr.name][i]
                best = int(p.argmax())
                panels.append((f"{attr.name}: {attr.classes[best]} ({100 * p[best]:.1f}%)", mean_overlay))
            written.append(explain_panel(view, panels, out_dir / f"{stem}_panel.png", title=str(paths[start + i].name)))
    return written
