"""The synthetic street-view renderer: determinism, the GSS folder layout, class coverage,
partial label files, captions in the prompt words, and cues a linear model can learn."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.synthetic.streets import (
    ATTRIBUTES,
    PRIORS,
    caption_for,
    covering_labels,
    render_street_scene,
    sample_scene_labels,
    write_gss_dataset,
)
from clipadapt.errors import ClipAdaptError
from clipadapt.task import normalise_class_name

COLUMNS = ["uuid", "source", "lat", "lon", "img_path"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def default_root(tmp_path_factory) -> Path:
    """The default sizes (600 / 300) at a small image size, rendered once for the module."""
    return write_gss_dataset(tmp_path_factory.mktemp("gss"), seed=0, image_size=48)


def test_labels_use_the_schema_classes_and_priors_are_skewed():
    rng = np.random.default_rng(0)
    draws = [sample_scene_labels(rng) for _ in range(3000)]
    for a in ATTRIBUTES:
        assert {d[a] for d in draws} <= set(GSS_SCHEMA[a][1])
        assert set(PRIORS[a]) == set(GSS_SCHEMA[a][1])
    share = lambda a, c: np.mean([d[a] == c for d in draws])  # noqa: E731
    assert 0.1 < share("glare", "yes") < 0.2
    assert 0.15 < share("pano_status", "true") < 0.25
    assert share("lighting_condition", "night") < 0.15
    assert share("weather", "snowy") < share("weather", "cloudy")


def test_same_seed_same_labels_and_pixels():
    def render(seed):
        rng = np.random.default_rng(seed)
        labels = [sample_scene_labels(rng) for _ in range(6)]
        return labels, [np.asarray(render_street_scene(lab, rng, 48)) for lab in labels]

    labels_a, pixels_a = render(7)
    labels_b, pixels_b = render(7)
    labels_c, pixels_c = render(8)
    assert labels_a == labels_b
    assert all(np.array_equal(a, b) for a, b in zip(pixels_a, pixels_b))
    assert not all(a.shape == c.shape and np.array_equal(a, c) for a, c in zip(pixels_a, pixels_c))


def test_image_sizes_follow_pano_status():
    rng = np.random.default_rng(1)
    for pano, widths in (("true", {128}), ("false", {64, 85})):
        for _ in range(6):
            labels = sample_scene_labels(rng)
            labels["pano_status"] = pano
            img = render_street_scene(labels, rng, size=64)
            assert img.mode == "RGB" and img.height == 64 and img.width in widths


def test_unknown_class_is_refused():
    labels = sample_scene_labels(np.random.default_rng(0))
    labels["weather"] = "sunny"
    with pytest.raises(ValueError, match="weather"):
        render_street_scene(labels, np.random.default_rng(0))


def test_captions_use_the_prompt_words():
    rng = np.random.default_rng(3)
    labels = {"glare": "yes", "lighting_condition": "dusk/dawn", "pano_status": "true", "platform": "railway",
              "quality": "good", "reflection": "no", "view_direction": "side", "weather": "foggy"}
    words = {a: gss_attribute(a, GSS_SCHEMA[a][1]).words(labels[a]) for a in ATTRIBUTES}
    single_prompt_seen = False
    for _ in range(300):
        caption = caption_for(labels, rng)
        mentioned = [a for a in ATTRIBUTES if words[a] in caption]
        assert 1 <= len(mentioned) <= 4, caption
        assert "non-panoramic" not in caption and "sunny" not in caption
        prompts = {gss_attribute(a, GSS_SCHEMA[a][1]).prompts()[GSS_SCHEMA[a][1].index(labels[a])] for a in ATTRIBUTES}
        single_prompt_seen |= caption in prompts
    assert single_prompt_seen  # one-attribute captions are exactly a GSS prompt


def test_folder_layout_and_columns(default_root):
    root = default_root
    assert (root / "done").is_file()
    assert sorted(p.name for p in (root / "img").iterdir()) == [str(k) for k in range(1, 8)]
    for split, n in (("train", 600), ("test", 300)):
        for a in ATTRIBUTES:
            rows = read_csv(root / split / f"{a}.csv")
            assert list(rows[0]) == COLUMNS + [a]
            assert len(rows) == n
            for row in rows[:20]:
                assert row["img_path"] == f"img/{Path(row['img_path']).parts[1]}/{row['uuid']}.jpeg"
                assert (root / row["img_path"]).is_file()
    images = list((root / "img").glob("*/*.jpeg"))
    assert len(images) == 900 and len({p.stem for p in images}) == 900
    raw = [r["weather"] for r in read_csv(root / "train" / "weather.csv")]
    assert any(v != v.strip().lower() for v in raw)  # messy raw labels occur...
    assert {normalise_class_name(v) for v in raw} == set(GSS_SCHEMA["weather"][1])  # ...and normalise cleanly


def test_every_class_in_both_splits_at_default_sizes(default_root):
    for split in ("train", "test"):
        for a in ATTRIBUTES:
            found = {normalise_class_name(r[a]) for r in read_csv(default_root / split / f"{a}.csv")}
            assert found == set(GSS_SCHEMA[a][1]), (split, a)


def test_small_splits_still_cover_every_class(tmp_path):
    root = write_gss_dataset(tmp_path, n_train=20, n_test=18, seed=5, image_size=32)
    for split in ("train", "test"):
        for a in ATTRIBUTES:
            found = {normalise_class_name(r[a]) for r in read_csv(root / split / f"{a}.csv")}
            assert found == set(GSS_SCHEMA[a][1]), (split, a)


def test_real_reader_reads_the_folder(default_root):
    from clipadapt.config import DataConfig
    from clipadapt.data.gss import read_gss

    train, _, test = read_gss(DataConfig(format="gss", root=str(default_root), attributes=["weather", "glare"]))
    assert len(train) == 600 and len(test) == 300
    assert train.task.attributes[0].classes == GSS_SCHEMA["weather"][1]
    assert (train.labels >= 0).all()


def test_rerun_is_cached_and_deterministic(tmp_path):
    a = write_gss_dataset(tmp_path / "a", n_train=12, n_test=6, seed=4, image_size=32)
    b = write_gss_dataset(tmp_path / "b", n_train=12, n_test=6, seed=4, image_size=32)
    for split in ("train", "test"):
        assert (a / split / "platform.csv").read_text() == (b / split / "platform.csv").read_text()
    first = read_csv(a / "train" / "platform.csv")[0]["img_path"]
    assert (a / first).read_bytes() == (b / first).read_bytes()
    stamp = (a / "done").stat().st_mtime_ns
    write_gss_dataset(tmp_path / "a", n_train=12, n_test=6, seed=4, image_size=32)
    assert (a / "done").stat().st_mtime_ns == stamp  # same parameters: nothing re-rendered
    write_gss_dataset(tmp_path / "a", n_train=10, n_test=6, seed=4, image_size=32)
    assert json.loads((a / "synthetic.json").read_text())["n_train"] == 10
    assert len(list((a / "img").glob("*/*.jpeg"))) == 16  # the old rendering was cleared


def test_refuses_to_overwrite_foreign_data(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(ClipAdaptError, match="refusing"):
        write_gss_dataset(tmp_path, n_train=4, n_test=4, image_size=32)
    with pytest.raises(ClipAdaptError, match="label_fraction"):
        write_gss_dataset(tmp_path / "new", label_fraction=0.0)


def test_label_fraction_gives_partial_files(tmp_path):
    root = write_gss_dataset(tmp_path, n_train=200, n_test=60, seed=2, image_size=32, label_fraction=0.5)
    lists = {a: {r["uuid"] for r in read_csv(root / "train" / f"{a}.csv")} for a in ATTRIBUTES}
    for a, uuids in lists.items():
        assert 60 < len(uuids) < 160, a
        found = {normalise_class_name(r[a]) for r in read_csv(root / "train" / f"{a}.csv")}
        assert found == set(GSS_SCHEMA[a][1])
    assert len({frozenset(u) for u in lists.values()}) > 1  # files cover different images
    full = write_gss_dataset(tmp_path / "full", n_train=200, n_test=60, seed=2, image_size=32)
    some = read_csv(root / "train" / "weather.csv")[-1]
    assert (root / some["img_path"]).read_bytes() == (full / some["img_path"]).read_bytes()  # same pixels


# ----------------------------------------------------------------------------- learnability
def model_view(img: Image.Image, size: int = 64) -> np.ndarray:
    """What the tiny ViT sees: short side to 64, centre crop."""
    scale = size / min(img.size)
    img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255


def simple_features(img: Image.Image) -> np.ndarray:
    """8x8 mean and max colours plus 8x8 edge energy: colour, layout and sharpness."""
    a = model_view(img)
    blocks = a.reshape(8, 8, 8, 8, 3)
    lum = a.mean(2)
    edges = np.abs(np.diff(lum, axis=0))[:, :-1] + np.abs(np.diff(lum, axis=1))[:-1]
    return np.concatenate([blocks.mean((1, 3)).ravel(), blocks.max((1, 3)).ravel(),
                           edges[:56, :56].reshape(8, 7, 8, 7).mean((1, 3)).ravel()])


# Attributes with global cues (sky, layout, surface, sharpness) must be learnt well; the
# local ones (a small flare, a reflection band) only need to beat the majority class.
GLOBAL_CUES = ("lighting_condition", "pano_status", "platform", "quality", "view_direction", "weather")
LOCAL_CUES = ("glare", "reflection")


def test_cues_are_learnable_by_a_linear_model():
    rng = np.random.default_rng(11)
    labels = covering_labels(18, rng) + [sample_scene_labels(rng) for _ in range(782)]
    x = np.stack([simple_features(render_street_scene(lab, rng, 64)) for lab in labels])
    n_fit = 500
    scaler = StandardScaler().fit(x[:n_fit])
    gains = {}
    for a in ATTRIBUTES:
        y = np.array([GSS_SCHEMA[a][1].index(lab[a]) for lab in labels])
        clf = RidgeClassifier(alpha=30.0, class_weight="balanced").fit(scaler.transform(x[:n_fit]), y[:n_fit])
        pred = clf.predict(scaler.transform(x[n_fit:]))
        majority = np.full_like(y[n_fit:], np.bincount(y[:n_fit]).argmax())
        gains[a] = f1_score(y[n_fit:], pred, average="macro") - f1_score(y[n_fit:], majority, average="macro")
    for a in GLOBAL_CUES:
        assert gains[a] > 0.25, (a, gains)
    for a in LOCAL_CUES:
        assert gains[a] > 0.05, (a, gains)
