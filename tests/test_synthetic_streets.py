"""The synthetic street-view renderer: deterministic, GSS layout, every class present,
and cues a simple classifier can learn (so learning tests learn from real pixels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from clipadapt.data.gss_schema import GSS_SCHEMA
from clipadapt.data.synthetic.streets import (ATTRIBUTES, caption_for, render_street_scene, sample_scene_labels,
                                              write_gss_dataset)


def test_same_seed_same_pixels_and_labels():
    a = [render_street_scene(sample_scene_labels(r), r, 48) for r in [np.random.default_rng(5)]]
    b = [render_street_scene(sample_scene_labels(r), r, 48) for r in [np.random.default_rng(5)]]
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))


def test_panoramas_are_twice_as_wide():
    rng = np.random.default_rng(0)
    labels = sample_scene_labels(rng)
    assert render_street_scene({**labels, "pano_status": "true"}, rng, 40).size == (80, 40)
    assert render_street_scene({**labels, "pano_status": "false"}, rng, 40).size == (40, 40)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return write_gss_dataset(root, n_train=120, n_test=60, seed=1, image_size=48, label_fraction=0.7)


def test_layout_columns_and_class_coverage(dataset):
    for split in ("train", "test"):
        for attr in ATTRIBUTES:
            table = pd.read_csv(dataset / split / f"{attr}.csv", dtype=str, keep_default_na=False)
            assert list(table.columns) == ["uuid", "source", "lat", "lon", "img_path", attr]
            assert all((dataset / p).is_file() and p.startswith("img/") for p in table["img_path"])
            assert set(table[attr].str.strip().str.lower()) == set(GSS_SCHEMA[attr][1])


def test_label_fraction_gives_partial_attribute_files(dataset):
    sizes = [len(pd.read_csv(dataset / "train" / f"{a}.csv")) for a in ATTRIBUTES]
    assert all(12 <= s < 120 for s in sizes) and len(set(sizes)) > 1


def test_finished_dataset_is_reused(dataset):
    stamp = (dataset / "train" / "weather.csv").stat().st_mtime_ns
    write_gss_dataset(dataset, n_train=120, n_test=60, seed=1, image_size=48, label_fraction=0.7)
    assert (dataset / "train" / "weather.csv").stat().st_mtime_ns == stamp


def test_captions_use_the_prompt_words():
    rng = np.random.default_rng(0)
    labels = {**sample_scene_labels(rng), "lighting_condition": "dusk/dawn", "glare": "yes"}
    captions = " ".join(caption_for(labels, rng) for _ in range(60))
    assert "a photo taken during twilight." in captions and "a photo with glare." in captions


def test_cues_are_learnable_from_pixels():
    """Logistic regression on 16x16 thumbnails beats the majority rate in macro-F1 for the
    global cues (lighting, weather, platform, reflection)."""
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for _ in range(700):
        scene = sample_scene_labels(rng)
        img = render_street_scene(scene, rng, 48).resize((16, 16))
        rows.append(np.asarray(img, np.float32).ravel() / 255)
        labels.append(scene)
    x = np.stack(rows)
    for attr in ("lighting_condition", "weather", "platform", "reflection"):
        y = np.array([lab[attr] for lab in labels])
        clf = LogisticRegression(max_iter=300).fit(x[:500], y[:500])
        learned = f1_score(y[500:], clf.predict(x[500:]), average="macro")
        values, counts = np.unique(y[:500], return_counts=True)
        majority = f1_score(y[500:], np.full(200, values[counts.argmax()]), average="macro")
        assert learned > majority + 0.1, (attr, learned, majority)
