"""Figures of a run: the row-normalised confusion matrix and the training curves.

Figures are built with matplotlib's object API (`Figure` + the Agg canvas) instead of
pyplot: nothing here selects a backend, opens a window or keeps a figure alive in
pyplot's registry, so plotting is safe on headless servers, in worker processes and in
notebooks whatever backend the user chose. Style settings are applied with
`matplotlib.rc_context`, which restores the user's rcParams afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib
import matplotlib.ticker
import numpy as np
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clipadapt.io import atomic_write
from clipadapt.metrics.classification import MetricsInputError, row_normalised

# ------------------------------------------------------------------ shared style
DPI = 120
# Okabe & Ito (2008): eight colours told apart under every common colour-vision deficiency.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # a second cue besides colour
SEQUENTIAL_CMAP = "cividis"  # perceptually uniform and colour-blind safe
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@contextmanager
def plot_style() -> Iterator[None]:
    """The package's font sizes and line colours, for the duration of a `with` block."""
    with matplotlib.rc_context({**STYLE, "axes.prop_cycle": cycler(color=OKABE_ITO)}):
        yield


def line_style(i: int) -> dict:
    """Colour and marker of the i-th line, so a line keeps its look across panels."""
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)]}


def _new_figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)  # attaches itself to fig; PNG rendering needs no global backend
    return fig


def _save(fig: Figure, path: Path) -> None:
    # No bbox_inches="tight": the PNG keeps exactly figsize * DPI pixels, which callers
    # (and the tests) can rely on; tight_layout already fits the labels inside.
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))


# ------------------------------------------------------------------ confusion matrix
ANNOTATE_MAX_CLASSES = 25  # beyond this, cell text is too small to read and is left out
LONG_LABEL = 6  # characters; longer tick labels on the x axis are rotated


def confusion_figsize(num_classes: int, class_names: Sequence[str] = ()) -> tuple[float, float]:
    """Figure size in inches: cells of ~0.55 in (0.3 in once cells carry no text), room
    for the tick labels and the colour bar. Rounded to quarter inches, so that the PNG is
    exactly size * DPI pixels (matplotlib truncates fractional pixels)."""
    cell = 0.55 if num_classes <= ANNOTATE_MAX_CLASSES else 0.3
    side = max(3.0, cell * num_classes)
    label_room = min(2.5, 0.07 * max((len(str(c)) for c in class_names), default=0))
    return (_quarter(side + 1.6 + label_room), _quarter(side + 1.0 + label_room))


def _quarter(inches: float) -> float:
    return round(inches * 4) / 4


def plot_confusion(confusion, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """Save the row-normalised confusion matrix as a PNG.

    Rows are true classes, columns predicted ones; each cell is the share of the row's
    images (annotated in percent up to 25 classes). A class with no true images keeps an
    all-zero row marked "–". Written atomically.
    """
    names = [str(c) for c in class_names]
    counts = np.asarray(confusion)
    if counts.shape != (len(names), len(names)):
        raise MetricsInputError(
            f"Confusion matrix of shape {counts.shape} does not match the {len(names)} class names {names}.")
    shares = row_normalised(counts)
    with plot_style():
        fig = _new_figure(confusion_figsize(len(names), names))
        ax = fig.add_subplot()
        image = ax.imshow(shares, cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=1.0)
        colour_bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        colour_bar.ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(xmax=1.0))
        _label_axes(ax, names, title, total=int(counts.sum()))
        if len(names) <= ANNOTATE_MAX_CLASSES:
            _annotate_cells(ax, shares, row_has_samples=counts.sum(axis=1) > 0)
        fig.tight_layout()
        _save(fig, path)


def _label_axes(ax, names: list[str], title: str, total: int) -> None:
    ticks = np.arange(len(names))
    rotate = len(names) > 8 or max((len(n) for n in names), default=0) > LONG_LABEL
    ax.set_xticks(ticks, names, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                  rotation_mode="anchor")
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}  (n={total})" if title else f"n={total}")
    for side in ("top", "right"):  # rc style hides these; an image frame looks better closed
        ax.spines[side].set_visible(True)


def _annotate_cells(ax, shares: np.ndarray, row_has_samples: np.ndarray) -> None:
    cmap = matplotlib.colormaps[SEQUENTIAL_CMAP]
    digits = 1 if len(shares) <= 8 else 0  # fewer digits where cells are small
    size = 8 if len(shares) <= 10 else 6
    for i, j in np.ndindex(shares.shape):
        text = f"{100 * shares[i, j]:.{digits}f}%" if row_has_samples[i] else "–"
        ax.text(j, i, text, ha="center", va="center", fontsize=size, color=_text_colour(cmap(shares[i, j])))


def _text_colour(rgba) -> str:
    """Black on light cells, white on dark ones (relative luminance, ITU-R BT.709)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


# ------------------------------------------------------------------ training curves
CURVE_FIGSIZE = {1: (5.0, 3.5), 2: (9.0, 3.5)}  # one panel, or losses | scores


def plot_curves(history: list[dict], path: Path,
                keys: Sequence[str] = ("train_loss", "val_loss", "val_macro_f1")) -> None:
    """Save per-epoch curves of `keys` from a trainer history as a PNG.

    Losses (keys containing "loss") and scores go on separate panels because their
    scales differ. Keys absent from every row are skipped (e.g. validation keys of a
    run without a validation split), and so are None/NaN values. The x axis is the
    row's "epoch" when present, else 1, 2, ....

    Raises:
        MetricsInputError: the history is empty or holds none of `keys`.
    """
    if not history:
        raise MetricsInputError("The training history is empty; there are no curves to plot.")
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    series = {key: _series(history, epochs, key) for key in keys}
    series = {key: xy for key, xy in series.items() if xy[0]}
    if not series:
        raise MetricsInputError(f"None of the keys {list(keys)} appear in the training history.")
    panels = [group for group in (
        [k for k in series if "loss" in k],
        [k for k in series if "loss" not in k],
    ) if group]
    with plot_style():
        fig = _new_figure(CURVE_FIGSIZE[len(panels)])
        for p, group in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), p + 1)
            for key in group:
                xs, ys = series[key]
                ax.plot(xs, ys, label=key, markersize=3, linewidth=1.5, **line_style(list(keys).index(key)))
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_ylabel("loss" if "loss" in group[0] else "score")
            ax.grid(alpha=0.3)
            ax.legend(frameon=False)
        fig.tight_layout()
        _save(fig, path)


def _series(history: list[dict], epochs: list, key: str) -> tuple[list, list]:
    """(epochs, values) of one key, leaving out rows where it is missing or not a number."""
    xs, ys = [], []
    for x, row in zip(epochs, history):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            xs.append(x)
            ys.append(float(value))
    return xs, ys
