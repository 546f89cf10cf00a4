"""Confusion-matrix and training-curve PNGs: written, non-empty, of the expected size."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image

from clipadapt.metrics.plots import DPI, CURVE_FIGSIZE, confusion_figsize, plot_confusion, plot_curves


def _png_size(path):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size  # (width, height) in pixels


def _expected_pixels(figsize):
    return round(figsize[0] * DPI), round(figsize[1] * DPI)


def test_confusion_png_has_the_figure_size(tmp_path):
    names = ["day", "dusk/dawn", "night"]
    cm = np.array([[50, 3, 0], [4, 6, 2], [0, 0, 0]])  # night has no true samples
    path = tmp_path / "sub" / "confusion.png"
    plot_confusion(cm, names, path, title="lighting")
    width, height = _png_size(path)
    assert (width, height) == _expected_pixels(confusion_figsize(3, names))
    w_in, h_in = confusion_figsize(3, names)
    assert width / height == pytest.approx(w_in / h_in, rel=0.01)
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())  # no temp file left behind


def test_confusion_png_with_many_long_classes(tmp_path):
    names = [f"a rather long class name {i}" for i in range(30)]  # rotated labels, no cell text
    cm = np.random.default_rng(0).integers(0, 20, size=(30, 30))
    plot_confusion(cm, names, tmp_path / "big.png", title="")
    assert _png_size(tmp_path / "big.png") == _expected_pixels(confusion_figsize(30, names))


def test_confusion_shape_mismatch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        plot_confusion(np.zeros((2, 2)), ["a", "b", "c"], tmp_path / "x.png", title="x")


def test_plotting_leaves_backend_and_rcparams_alone(tmp_path):
    backend, font_size = matplotlib.get_backend(), matplotlib.rcParams["font.size"]
    plot_confusion(np.eye(2, dtype=int), ["a", "b"], tmp_path / "c.png", title="t")
    assert matplotlib.get_backend() == backend
    assert matplotlib.rcParams["font.size"] == font_size


def test_curves_png_two_panels(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_macro_f1": 0.5 + 0.05 * e}
        for e in range(1, 6)
    ]
    plot_curves(history, tmp_path / "curves.png")
    assert _png_size(tmp_path / "curves.png") == _expected_pixels(CURVE_FIGSIZE[2])


def test_curves_without_validation_use_one_panel(tmp_path):
    history = [{"epoch": e, "lr": 1e-3, "train_loss": 1.0 / e} for e in range(1, 4)]
    plot_curves(history, tmp_path / "curves.png")
    assert _png_size(tmp_path / "curves.png") == _expected_pixels(CURVE_FIGSIZE[1])


def test_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_curves([], tmp_path / "c.png")
    with pytest.raises(ValueError, match="None of the keys"):
        plot_curves([{"epoch": 1, "lr": 0.1}], tmp_path / "c.png")
