"""The self-contained HTML report of a run folder, and the gallery ranking."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser

import pandas as pd
import pytest
from PIL import Image
from test_report_support import WEATHER_ORDER, make_run

from clipadapt.errors import ClipAdaptError
from clipadapt.report import write_report
from clipadapt.report.gallery import rank_gallery, read_predictions
from clipadapt.report.sections import percent

SECTIONS = ("metrics", "per-class", "confusion", "curves", "gallery", "card")


class Page(HTMLParser):
    """What the tests look at: element ids, images (src, alt) and gallery figures in order."""

    def __init__(self, text: str):
        super().__init__()
        self.ids: set[str] = set()
        self.images: list[dict] = []
        self.figures: list[dict] = []  # gallery items: attribute section, verdict, their images
        self.headers: list[str] = []
        self._section = None
        self._in_th = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
            if attrs["id"].startswith("gallery-"):
                self._section = attrs["id"][len("gallery-"):]
        if tag == "img":
            self.images.append(attrs)
            if self.figures and self.figures[-1].get("open"):
                self.figures[-1]["images"].append(attrs)
        if tag == "figure" and "item" in attrs.get("class", ""):
            self.figures.append({"attribute": self._section, "verdict": attrs.get("data-verdict"), "images": [],
                                 "open": True})
        self._in_th = tag == "th"

    def handle_endtag(self, tag):
        if tag == "figure" and self.figures:
            self.figures[-1]["open"] = False
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th and data.strip():
            self.headers.append(data.strip())


def decode(src: str) -> Image.Image:
    head, payload = src.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64")
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    image.load()
    return image


@pytest.fixture(scope="module")
def run(tmp_path_factory, micro_backbone):
    return make_run(tmp_path_factory.mktemp("report") / "run", micro_backbone)


@pytest.fixture(scope="module")
def report(run):
    path = write_report(run)
    text = path.read_text()
    return path, text, Page(text)


def test_report_is_written_in_the_run_folder_with_every_section(run, report):
    path, text, page = report
    assert path == run / "report.html"
    assert text.startswith("<!DOCTYPE html>")
    assert set(SECTIONS) <= page.ids
    assert "mhadapter" in text and "clipadapt-micro" in text  # the title names method and backbone
    assert "<details>" in text and "&quot;trainable_parameters&quot;" in text  # the card, escaped


def test_metrics_table_shows_the_numbers_of_metrics_json(run, report):
    _path, text, page = report
    metrics = json.loads((run / "metrics.json").read_text())
    for name, m in metrics["attributes"].items():
        for key in ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy"):
            assert f'<td class="num">{percent(m[key])}</td>' in text
        assert name in page.headers
    assert "mean over attributes" in page.headers
    assert f'<td class="num">{percent(metrics["mean"]["macro_f1"])}</td>' in text
    assert {"accuracy", "macro-F1", "weighted-F1", "n"} <= set(page.headers)


def test_report_is_self_contained(report):
    _path, text, page = report
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert page.images and all(im["src"].startswith("data:image/") for im in page.images)
    assert all(im.get("alt") for im in page.images)


def test_embedded_images_decode_as_their_declared_format(report):
    _path, _text, page = report
    formats = {"data:image/png": "PNG", "data:image/jpeg": "JPEG"}
    for im in page.images:
        mime = im["src"].split(";", 1)[0]
        assert decode(im["src"]).format == formats[mime]
    figures = [im for im in page.images if "figure" in im.get("class", "")]
    # per-class bars and confusion matrices for two attributes, plus the curves: all PNG
    assert len(figures) == 5 and all(decode(im["src"]).format == "PNG" for im in figures)


def test_gallery_puts_the_most_confident_mistake_first_with_attention(report):
    _path, _text, page = report
    weather = [f for f in page.figures if f["attribute"] == "weather"]
    assert [f["verdict"] for f in weather] == ["wrong"] * 3 + ["right"] * 3
    first_alt = weather[0]["images"][0]["alt"]
    assert f"img{WEATHER_ORDER[0]}.png" in first_alt
    # mhadapter: each item shows the image and its attention overlay, as thumbnails
    assert all(len(f["images"]) == 2 for f in page.figures)
    assert all(decode(im["src"]).size == (160, 160) for f in weather for im in f["images"])


def test_gallery_size_limits_each_attribute(run, tmp_path):
    page = Page(write_report(run, out=tmp_path / "small.html", gallery=2).read_text())
    assert [f["attribute"] for f in page.figures] == ["weather", "weather", "pano_status", "pano_status"]
    off = Page(write_report(run, out=tmp_path, gallery=0).read_text())  # a folder gets report.html
    assert (tmp_path / "report.html").is_file() and not off.figures and "gallery" in off.ids


def test_rank_gallery_orders_wrong_by_confidence_then_right(run):
    table = read_predictions(run / "predictions.csv")
    ranked = rank_gallery(table, "weather", limit=10)
    assert [int(item.path[-5]) for item in ranked] == WEATHER_ORDER
    assert [item.wrong for item in ranked] == [True] * 3 + [False] * 3


def test_class_names_that_look_like_booleans_stay_text(run):
    table = read_predictions(run / "predictions.csv")
    assert set(table["pano_status:true"]) == {"true", "false"}
    ranked = rank_gallery(table, "pano_status", limit=1)
    assert ranked[0].true == "true" and ranked[0].predicted == "false" and ranked[0].probability == pytest.approx(0.85)


def test_rows_without_a_label_are_left_out():
    table = pd.DataFrame({"path": ["a", "b"], "w:true": ["x", ""], "w": ["y", "y"],
                          "w:p(x)": [0.3, 0.2], "w:p(y)": [0.7, 0.8]})
    assert [item.path for item in rank_gallery(table, "w", 5)] == ["a"]


def test_missing_pieces_become_notes(tmp_path, micro_backbone):
    run = make_run(tmp_path / "bare", micro_backbone, evaluated=False)
    text = write_report(run).read_text()
    page = Page(text)
    assert set(SECTIONS) <= page.ids
    assert "No test metrics" in text and "No predictions.csv" in text and "No training curves" in text
    assert "<table" not in text


def test_figures_are_drawn_from_json_when_pngs_are_missing(tmp_path, micro_backbone):
    run = make_run(tmp_path / "nofig", micro_backbone, figures=False)
    page = Page(write_report(run).read_text())
    figures = [im for im in page.images if "figure" in im.get("class", "")]
    assert len(figures) == 5  # confusion from metrics.json, curves from history.json


def test_missing_images_and_other_methods(tmp_path, micro_backbone):
    run = make_run(tmp_path / "zs", micro_backbone, method_name="zeroshot")
    shutil.rmtree(run / "images")
    text = write_report(run).read_text()
    page = Page(text)
    assert page.figures and all(not f["images"] for f in page.figures)  # no thumbnails, no attention
    assert "image not found or unreadable" in text


def test_one_image_per_item_without_attention(tmp_path, micro_backbone):
    run = make_run(tmp_path / "zs", micro_backbone, method_name="zeroshot")
    page = Page(write_report(run).read_text())
    assert page.figures and all(len(f["images"]) == 1 for f in page.figures)


def test_not_a_run_folder_and_bad_gallery(tmp_path, run):
    with pytest.raises(ClipAdaptError, match="not a clipadapt run folder"):
        write_report(tmp_path)
    with pytest.raises(ClipAdaptError, match="gallery"):
        write_report(run, gallery=-1)


def test_a_model_that_cannot_be_loaded_leaves_attention_out_with_a_note(tmp_path, micro_backbone):
    run = make_run(tmp_path / "moved", micro_backbone)
    card = json.loads((run / "card.json").read_text())
    card["backbone"]["weights_id"] = "file:0123456789ab"  # as if trained on weights this machine lacks
    (run / "card.json").write_text(json.dumps(card))
    text = write_report(run).read_text()
    assert "Attention overlays left out" in text
    assert all(len(f["images"]) == 1 for f in Page(text).figures)
