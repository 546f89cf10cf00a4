"""Figures of the report: per-class accuracy bars and the explain panel.

Like `clipadapt.metrics.plots`, figures use matplotlib's object API (Figure + Agg
canvas) under the package style, so nothing touches pyplot's global state.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image

from clipadapt.io import atomic_write
from clipadapt.metrics.plots import DPI, OKABE_ITO, SEQUENTIAL_CMAP, plot_style

BAR_COLOUR = OKABE_ITO[3]  # one quantity per chart, so one colour (blue, safe for all)
CHANCE_COLOUR = OKABE_ITO[4]


def new_figure(size: tuple[float, float], layout: str | None = None) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (for embedding in HTML)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def per_class_accuracy_png(attribute: str, per_class: dict[str, float | None], support: dict[str, int]) -> bytes:
    """Horizontal bars of per-class accuracy (recall) with each class's test count.

    A class without test images gets no bar and the note "no test images" rather
    than a misleading 0. The dashed line is chance for a uniform guess (1/K).
    """
    names = list(per_class)
    values = [per_class[n] for n in names]
    with plot_style():
        fig = new_figure((6.0, round(1.2 + 0.32 * len(names), 2)))
        ax = fig.add_subplot()
        y = np.arange(len(names))
        ax.barh(y, [v if v is not None else 0.0 for v in values], color=BAR_COLOUR, height=0.6)
        for i, (name, v) in enumerate(zip(names, values)):
            n = support.get(name, 0)
            text = "no test images" if v is None else f"{100 * v:.1f}%  (n={n})"
            ax.text(min(v or 0.0, 1.0) + 0.01, i, text, va="center", fontsize=7)
        ax.axvline(1.0 / max(len(names), 1), color=CHANCE_COLOUR, linestyle="--", linewidth=1)
        ax.set_yticks(y, names)
        ax.invert_yaxis()  # first class on top, as in the tables
        ax.set_xlim(0.0, 1.25)  # room for the labels right of full bars
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([0, 0.25, 0.5, 0.75, 1.0]))
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(xmax=1.0))
        # Said in the axis label rather than a legend, which could cover a bar.
        ax.set_xlabel("per-class accuracy (recall); dashed line: chance (1/K)")
        ax.set_title(attribute)
        fig.tight_layout()
        return figure_png(fig)


def explain_panel(view: Image.Image, overlays: Sequence[tuple[str, Image.Image]], path: Path, title: str = "",
                  bar_label: str = "attention received (min-max)") -> Path:
    """One PNG: the image as the model saw it, then one overlay per map with its caption
    (e.g. the attribute and its prediction), and a colour bar saying what the colours mean."""
    columns = 1 + len(overlays)
    with plot_style():
        # constrained layout makes room for titles and the shared colour bar
        fig = new_figure((2.6 * columns + 0.8, 3.0), layout="constrained")
        axes = fig.subplots(1, columns, squeeze=False)[0]
        axes[0].imshow(view)
        axes[0].set_title("as the model saw it")
        for ax, (caption, image) in zip(axes[1:], overlays):
            ax.imshow(image)
            ax.set_title(caption)
        for ax in axes:
            ax.set_axis_off()
        bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=SEQUENTIAL_CMAP), ax=list(axes), fraction=0.02, pad=0.02)
        bar.set_label(bar_label)
        if title:
            fig.suptitle(title)
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    return Path(path)


def reliability_png(attribute: str, table: dict, binary: bool = False, ece: float | None = None,
                    ece_before: float | None = None) -> bytes:
    """A reliability diagram from `metrics.calibration.reliability_bins` output: per bin the
    observed accuracy (bars; for a binary attribute the frequency of "present") against
    the diagonal of perfect calibration, each bin's mean confidence as a dot and its row
    count above the bar. Bars below the diagonal: overconfident; above: underconfident."""
    edges = np.asarray(table["edges"], dtype=float)
    width = edges[1:] - edges[:-1]
    centres = (edges[1:] + edges[:-1]) / 2
    filled = [i for i, n in enumerate(table["count"]) if n]
    with plot_style():
        fig = new_figure((4.2, 4.0))
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color=CHANCE_COLOUR, linestyle="--", linewidth=1)
        ax.bar(centres[filled], [table["accuracy"][i] for i in filled], width=width[filled], align="center",
               color=BAR_COLOUR, edgecolor="white", linewidth=0.6)
        ax.plot([table["confidence"][i] for i in filled], [table["confidence"][i] for i in filled], linestyle="none",
                marker="o", markersize=3, color=OKABE_ITO[7])
        for i in filled:
            ax.text(centres[i], min(table["accuracy"][i] + 0.02, 1.0), str(table["count"][i]), ha="center", fontsize=6)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("predicted p(present)" if binary else "confidence (probability of the predicted class)")
        ax.set_ylabel("observed frequency of present" if binary else "accuracy")
        scores = [] if ece is None else [f"ECE {100 * ece:.1f}%"]
        if ece_before is not None:
            scores.append(f"before scaling {100 * ece_before:.1f}%")
        ax.set_title(f"{attribute}" + (f" ({', '.join(scores)})" if scores else ""))
        fig.tight_layout()
        return figure_png(fig)
