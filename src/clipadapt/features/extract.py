"""Filling a feature-store entry: resumable, batch by batch, view by view."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from clipadapt.bars import NotebookBars, in_notebook
from clipadapt.errors import ClipAdaptError



class FeatureSet(Protocol):
    """What filling needs of a store entry (`features.store.FeatureSet`): written here as a
    protocol, so this module never imports the store that imports it."""

    key: str
    path: Path
    n_views: int
    done: np.ndarray  # [N, views] bool: rows already written

    def write(self, index, view: int, tokens, embeds, flush: bool = True) -> None: ...
    def flush(self) -> None: ...
    def missing(self) -> list: ...

Loader = Callable[[list[int], int], Iterable[tuple[torch.Tensor, torch.Tensor]]]
Encoder = Callable[[torch.Tensor], tuple[torch.Tensor | None, torch.Tensor]]


class _ImagesPerSecond(ProgressColumn):
    """Throughput in images/s (rich's own speed columns speak of bytes)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} img/s" if speed else "- img/s", style="progress.data.speed")


def _progress_bar(enabled: bool):
    if not enabled:
        return nullcontext(None)
    if in_notebook():
        return NotebookBars()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    _ImagesPerSecond(), TimeRemainingColumn())


def _pending(featureset: "FeatureSet") -> list[tuple[int, list[int]]]:
    """(view, items not done for that view), for each view with work left."""
    return [(v, np.flatnonzero(~featureset.done[:, v]).tolist()) for v in range(featureset.n_views)
            if not featureset.done[:, v].all()]


def extract(featureset: "FeatureSet", make_loader: Loader, encode: Encoder, device: torch.device | str = "cpu",
            progress: bool = True, flush_every: int = 20) -> int:
    """Encode every (item, view) of `featureset` not yet done; return how many images were encoded.

    For each view v with work left, `make_loader(items, v)` yields (images [B, 3, H, W],
    item indices [B]) for exactly those items, with view v's deterministic transform
    (see `seeded_view_transform`); `encode(images)` returns (tokens [B, T, D] or None,
    embeddings [B, E]) and runs under torch.inference_mode(). Results are written as they come;
    the done mask is persisted every `flush_every` batches and on exit, including an
    exception or Ctrl-C, so re-running continues where the last run stopped.
    """
    if flush_every < 1:
        raise ValueError(f"flush_every must be >= 1, got {flush_every}")
    work = _pending(featureset)
    total = sum(len(items) for _, items in work)
    if total == 0:
        return 0
    encoded = 0
    with _progress_bar(progress) as bar:
        task = bar.add_task(f"features {featureset.key}", total=total) if bar is not None else None
        try:
            for view, items in work:
                if bar is not None:
                    bar.update(task, description=f"features {featureset.key} view {view + 1}/{featureset.n_views}")
                for batch, (images, index) in enumerate(make_loader(items, view), start=1):
                    with torch.inference_mode():  # features go straight to disk
                        tokens, embeds = encode(images.to(device))
                    featureset.write(index, view, tokens, embeds, flush=False)
                    encoded += len(index)
                    if bar is not None:
                        bar.advance(task, len(index))
                    if batch % flush_every == 0:
                        featureset.flush()
        finally:
            # Keep what finished batches produced, whether we stop normally or not.
            featureset.flush()
    _check_all_done(featureset)
    return encoded


def _check_all_done(featureset: "FeatureSet") -> None:
    # A loader that silently drops rows would leave holes that only show up later, at read time.
    missing = featureset.missing()
    if missing:
        raise ClipAdaptError(
            f"Feature extraction into {featureset.path} ended with {len(missing)} image rows never produced by the "
            f"loader (first: {missing[:10]}); the loader must yield every item it is given."
        )
