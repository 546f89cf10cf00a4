"""Readers: GSS layout (uuid fallback, multi-attribute merge), manifests, folders, splits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clipadapt.config import DataConfig
from clipadapt.data.formats import build_splits, collect_images
from clipadapt.data.image_dataset import ImageDataset
from clipadapt.data.images import load_image
from clipadapt.data.splits import load_shots, sample_shots, save_shots, stratified_split
from clipadapt.data.transforms import eval_transform, train_transform
from clipadapt.errors import ClipAdaptError


def image(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (value, value, value)).save(path)
    return path


@pytest.fixture()
def gss(tmp_path):
    """Six images; weather labels all, glare only some; one row found by uuid only."""
    root = tmp_path / "gss"
    uuids = [f"u{i}" for i in range(6)]
    for i, u in enumerate(uuids):
        image(root / "img" / str(1 + i % 2) / f"{u}.jpeg", 40 * i)
    (root / "train").mkdir()
    (root / "test").mkdir()
    weather = pd.DataFrame({"uuid": uuids[:4], "img_path": [f"img/{1 + i % 2}/{u}.jpeg" for i, u in enumerate(uuids[:4])],
                            "weather": [" Foggy", "clear", "CLEAR ", "rainy"]})
    weather.loc[2, "img_path"] = ""  # found through img/*/<uuid>.jpeg
    weather.to_csv(root / "train" / "weather.csv", index=False)
    pd.DataFrame({"uuid": uuids[1:3], "img_path": ["img/2/u1.jpeg", "img/1/u2.jpeg"], "glare": ["yes", "no"]}).to_csv(
        root / "train" / "glare.csv", index=False)
    pd.DataFrame({"uuid": uuids[4:], "img_path": ["img/1/u4.jpeg", "img/2/u5.jpeg"], "weather": ["rainy", "foggy"]}).to_csv(
        root / "test" / "weather.csv", index=False)
    pd.DataFrame({"uuid": uuids[4:], "img_path": ["img/1/u4.jpeg", "img/2/u5.jpeg"], "glare": ["no", "yes"]}).to_csv(
        root / "test" / "glare.csv", index=False)
    return root


def test_gss_single_attribute_normalises_labels_and_finds_uuid_images(gss):
    splits = build_splits(DataConfig(format="gss", root=gss, attributes=["weather"], val_fraction=0))
    attr = splits.task.attributes[0]
    assert attr.classes == ("clear", "foggy", "rainy")
    assert attr.prompts()[1] == "a photo in foggy weather."
    assert splits.train.labels[:, 0].tolist() == [1, 0, 0, 2]
    assert splits.train.paths[2].name == "u2.jpeg" and splits.train.paths[2].is_file()
    assert splits.test.labels[:, 0].tolist() == [2, 1]
    assert "weather.csv line 2" in splits.train.sources[0]


def test_gss_multi_attribute_merges_by_image_with_missing_labels(gss):
    splits = build_splits(DataConfig(format="gss", root=gss, attributes=["weather", "glare"], val_fraction=0))
    assert splits.task.names == ["weather", "glare"]
    assert len(splits.train) == 4
    assert splits.train.labels.tolist() == [[1, -1], [0, 1], [0, 0], [2, -1]]
    assert splits.task.attributes[1].prompts() == ["a photo with no glare.", "a photo with glare."]


def test_gss_all_attributes_by_default(gss):
    assert build_splits(DataConfig(format="gss", root=gss, val_fraction=0)).task.names == ["glare", "weather"]


def test_gss_unknown_test_label_names_file_line_and_label(gss):
    table = pd.read_csv(gss / "test" / "weather.csv")
    table.loc[1, "weather"] = "hail"
    table.to_csv(gss / "test" / "weather.csv", index=False)
    with pytest.raises(ClipAdaptError, match=r"test/weather.csv line 3: label 'hail'.*known classes"):
        build_splits(DataConfig(format="gss", root=gss, attributes=["weather"]))


def test_gss_missing_column_lists_the_columns(gss):
    pd.read_csv(gss / "train" / "weather.csv").rename(columns={"weather": "Weather"}).to_csv(gss / "train" / "weather.csv", index=False)
    with pytest.raises(ClipAdaptError, match=r"weather.csv has no column 'weather'; its columns are"):
        build_splits(DataConfig(format="gss", root=gss, attributes=["weather"]))


def test_gss_missing_image_names_file_and_line(gss):
    (gss / "img" / "2" / "u3.jpeg").unlink()
    with pytest.raises(ClipAdaptError, match=r"u3.jpeg \(.*train/weather.csv line 5\)"):
        build_splits(DataConfig(format="gss", root=gss, attributes=["weather"]))


def test_gss_unknown_attribute_lists_available(gss):
    with pytest.raises(ClipAdaptError, match=r"No train/lighting.csv.*\['glare', 'weather'\]"):
        build_splits(DataConfig(format="gss", root=gss, attributes=["lighting"]))


def test_corrupt_image_names_file_and_row(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ClipAdaptError, match=r"Unreadable image: .*bad.jpg \(train.csv line 9\)"):
        load_image(bad, "train.csv line 9")
    with pytest.raises(ClipAdaptError, match="Image not found"):
        load_image(tmp_path / "nope.jpg")


def test_image_dataset_flag_mode_keeps_going(tmp_path):
    good = image(tmp_path / "a.png")
    bad = tmp_path / "b.png"
    bad.write_bytes(b"")
    ds = ImageDataset([bad, good], eval_transform(16), on_error="flag")
    tensor, index, ok = ds[0]
    assert not ok and tensor.shape == (3, 16, 16) and torch.all(tensor == 0)
    assert ds[1][2] and "b.png" in ds.error_for(0) and ds.error_for(1) == ""
    with pytest.raises(ClipAdaptError):
        ImageDataset([bad], eval_transform(16))[0]


def test_manifest_csv_and_parquet_with_missing_cells(tmp_path):
    for i in range(6):
        image(tmp_path / "imgs" / f"{i}.png", 30 * i)
    table = pd.DataFrame({"file": [f"imgs/{i}.png" for i in range(6)],
                          "colour": ["Red", "blue", "red", "", "blue", "red"], "shape": ["round"] * 3 + ["square"] * 3})
    table.iloc[:4].to_csv(tmp_path / "train.csv", index=False)
    table.iloc[4:].to_parquet(tmp_path / "test.parquet")
    cfg = DataConfig(format="manifest", train_manifest=tmp_path / "train.csv", test_manifest=tmp_path / "test.parquet",
                     path_column="file", attributes=["colour", "shape"], val_fraction=0,
                     templates={"colour": "a {} thing."}, class_words={"colour": {"red": "crimson"}})
    splits = build_splits(cfg)
    assert splits.train.labels.tolist() == [[1, 0], [0, 0], [1, 0], [-1, 1]]
    assert splits.test.labels.tolist() == [[0, 1], [1, 1]]
    assert splits.task.attributes[0].prompts() == ["a blue thing.", "a crimson thing."]
    with pytest.raises(ClipAdaptError, match="has no column 'size'"):
        build_splits(cfg.model_copy(update={"attributes": ["size"]}))


def test_folder_layout_and_unknown_test_class(tmp_path):
    for split, cls in (("train", "cat"), ("train", "dog"), ("train", "dog"), ("test", "cat")):
        image(tmp_path / split / cls / f"{len(list(tmp_path.rglob('*.png')))}.png")
    splits = build_splits(DataConfig(format="folder", root=tmp_path, val_fraction=0))
    assert splits.task.attributes[0].classes == ("cat", "dog")
    assert sorted(splits.train.labels[:, 0].tolist()) == [0, 1, 1]
    image(tmp_path / "test" / "fox" / "9.png")
    with pytest.raises(ClipAdaptError, match="class folder 'fox' does not exist in train"):
        build_splits(DataConfig(format="folder", root=tmp_path))


def test_stratified_split_keeps_every_class_and_is_seeded():
    labels = np.array([0] * 50 + [1] * 8 + [2] * 2 + [-1] * 3)
    train, val = stratified_split(labels, 0.2, seed=1)
    assert set(labels[val]) == {0, 1, 2} and len(np.intersect1d(train, val)) == 0
    assert len(train) + len(val) == len(labels) and np.all(labels[val] != -1)
    assert np.array_equal(val, stratified_split(labels, 0.2, seed=1)[1])
    assert not np.array_equal(val, stratified_split(labels, 0.2, seed=2)[1])


def test_shots_are_deterministic_and_round_trip(gss, tmp_path):
    labels = np.array([0] * 10 + [1] * 3)
    shots = sample_shots(labels, 4, seed=0)
    assert np.bincount(labels[shots]).tolist() == [4, 3]
    assert np.array_equal(shots, sample_shots(labels, 4, seed=0))
    data = build_splits(DataConfig(format="gss", root=gss, attributes=["weather"], val_fraction=0)).train
    save_shots(tmp_path / "shots.json", data, np.array([3, 1]))
    assert json.loads((tmp_path / "shots.json").read_text())["images"][0].endswith("u3.jpeg")
    assert load_shots(tmp_path / "shots.json", data).tolist() == [3, 1]


def test_transforms_give_model_sized_tensors(tmp_path):
    img = Image.new("RGB", (200, 100))
    assert eval_transform(64)(img).shape == (3, 64, 64)
    assert train_transform(64)(img).shape == (3, 64, 64)


def test_collect_images_from_folder_glob_and_manifest(tmp_path):
    a, b = image(tmp_path / "x" / "a.png"), image(tmp_path / "x" / "sub" / "b.jpg")
    assert collect_images(tmp_path / "x") == [a, b]
    assert collect_images(str(tmp_path / "x" / "*.png")) == [a]
    pd.DataFrame({"path": ["x/a.png"]}).to_csv(tmp_path / "m.csv", index=False)
    assert collect_images(tmp_path / "m.csv") == [tmp_path / "x" / "a.png"]
    with pytest.raises(ClipAdaptError, match="not an image, folder, manifest"):
        collect_images(str(tmp_path / "*.tif"))
