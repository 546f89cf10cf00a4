"""Attention maps of CLIP-MHAdapter (Figure 3 of the paper), and the pictures every
explanation is drawn with (heat maps, overlays on the view the model saw).

The recipe (SPEC 1, "Figure 3"): take the adapter's self-attention [heads, N, N]
(rows = queries, columns = keys), average the heads, take the attention each patch
RECEIVES (the mean of its column over all queries), reshape to the patch grid,
upsample bilinearly to the image, min-max normalise and overlay it on the image the
model saw (the centre crop of the test transform).

The column mean is linear, so the head mean of the per-head received maps equals the
received map of the head-averaged attention; per-head maps therefore come for free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clipadapt.data.transforms import LetterBox
from clipadapt.engine.sources import make_transform
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import METHODS
from clipadapt.metrics.plots import SEQUENTIAL_CMAP

DISPLAY_SIZE = 224  # px of written overlays: the paper's input size, readable for tiny models too
BATCH_SIZE = 16  # images per forward pass when explaining


# ------------------------------------------------------------------ the maps
def maps_kind(method) -> str | None:
    """The kind of maps a method (class or instance) has to draw: its `explain_maps`
    ("attention", "parts", "saliency"), else "attention" when it provides
    `attention_maps(features)` -> per attribute [B, heads, N, N] (a method registered
    from outside joins that way too); None: no maps."""
    kind = getattr(method, "explain_maps", None)
    return kind or ("attention" if callable(getattr(method, "attention_maps", None)) else None)


def explainable_methods() -> list[str]:
    """Registered methods with attention over the patches to show per attribute (maps of
    kind "attention": CLIP-MHAdapter, and any method providing `attention_maps`)."""
    return [name for name in METHODS.names() if maps_kind(METHODS.get(name)) == "attention"]


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


def model_view(image: Image.Image, size: int = DISPLAY_SIZE, preprocess: str = "crop") -> Image.Image:
    """The part of `image` the model saw, at `size` x `size` px.

    "crop" (the test transform of most runs) resizes the short side and centre-crops a
    square, which keeps the centred square of side = short side; cropping that at full
    resolution and then resizing gives the same view, sharper than upsampling the
    model's input. "letterbox" (pedestrian runs) pads to a black-bordered square;
    "resize" (imported PromptPAR runs) squeezes the whole image into the square.
    """
    if preprocess == "letterbox":
        return LetterBox(size)(image)
    if preprocess == "resize":
        return image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
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
