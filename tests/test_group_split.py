"""The validation split drawn from train by whole groups (data.val_group_column): no group
on both sides, close to data.val_fraction, seeded; null keeps the stratified draw."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from clipadapt.config import DataConfig, validate_config
from clipadapt.data.formats import build_splits
from clipadapt.data.splits import group_split, stratified_split
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import check_data_settings
from clipadapt.synthetic.pedestrian_frames import write_pedestrian_frames


def groups_of(images) -> set[str]:
    return {images.groups[i] or f"row {images.sources[i]}" for i in range(len(images))}


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Tracked pedestrian crops: crops.csv (img_path, track, ..., split, twelve 0/1 columns),
    72 train rows in 12 tracks of 6 frames, and attributes.json."""
    return write_pedestrian_frames(tmp_path_factory.mktemp("frames"), n_clips=8, crops=True)


def par(frames, **data) -> DataConfig:
    return DataConfig(format="manifest", task="multilabel", train_manifest=frames / "crops.csv",
                      attribute_file=frames / "attributes.json", split_column="split", **data)


@pytest.fixture(scope="module")
def shops(tmp_path_factory):
    """A multi-class manifest: 60 images of 15 shops (4 each), class 'kind', some rows with
    no shop (an empty cell)."""
    root = tmp_path_factory.mktemp("shops")
    lines = ["img_path,shop,kind"]
    for i in range(60):
        Image.new("RGB", (4, 4), (i, 0, 0)).save(root / f"{i}.png")
        shop = "" if i >= 52 else f"s{i // 4:02d}"
        lines.append(f"{i}.png,{shop},{('food', 'tools', 'books')[(i // 4) % 3]}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def shop_config(shops, **data) -> DataConfig:
    return DataConfig(format="manifest", train_manifest=shops / "train.csv", attributes=["kind"], **data)


def test_no_track_is_on_both_sides_of_a_multilabel_split(frames):
    splits = build_splits(par(frames, val_fraction=0.2, val_group_column="track"))
    train, val = groups_of(splits.train), groups_of(splits.val)
    assert train and val and not train & val
    assert len(splits.train) + len(splits.val) == 72 and len(splits.val) == 12  # 2 of 12 tracks; 14.4 rows asked
    assert splits.test is not None and len(splits.test) == 72  # the table's own test rows stay as they were


def test_a_multiclass_split_keeps_groups_and_takes_empty_cells_one_by_one(shops):
    splits = build_splits(shop_config(shops, val_fraction=0.25, val_group_column="shop"))
    named_train = {g for g in splits.train.groups if g}
    named_val = {g for g in splits.val.groups if g}
    assert named_val and not named_train & named_val
    assert len(splits.val) == 15  # 60 * 0.25, reachable with 4-row shops and 1-row empty cells
    for shop in named_val:  # every row of a shop went along
        assert splits.val.groups.count(shop) == 4


def test_the_fraction_is_close_to_the_one_asked():
    rng = np.random.default_rng(0)
    groups = [f"t{k}" for k in range(200) for _ in range(int(rng.integers(1, 12)))]
    for fraction in (0.1, 0.2, 0.3, 0.5):
        for seed in range(5):
            train, val = group_split(groups, fraction, seed)
            assert abs(len(val) / len(groups) - fraction) < 0.01, (fraction, seed)
            assert not {groups[i] for i in train} & {groups[i] for i in val}
            assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(groups)))


def test_the_same_seed_gives_the_same_split_and_another_seed_another(shops):
    first = build_splits(shop_config(shops, val_group_column="shop", split_seed=3))
    again = build_splits(shop_config(shops, val_group_column="shop", split_seed=3))
    other = build_splits(shop_config(shops, val_group_column="shop", split_seed=4))
    assert first.val.paths == again.val.paths and first.train.paths == again.train.paths
    assert first.val.paths != other.val.paths
    groups = ["b", "a", "c", "a", "d", "b", "e", "c", "f", "d"]  # the named groups' row order does not matter
    _, val = group_split(groups, 0.2, seed=7)
    _, val_reversed = group_split(groups[::-1], 0.2, seed=7)
    assert {groups[i] for i in val} == {groups[::-1][i] for i in val_reversed}


def test_null_keeps_the_stratified_draw(frames, shops):
    for config in (par(frames, val_fraction=0.2), shop_config(shops, val_fraction=0.2, split_seed=5)):
        whole = build_splits(config.model_copy(update={"val_fraction": 0.0})).train
        keep, held = stratified_split(whole.labels[:, 0], config.val_fraction, config.split_seed)
        splits = build_splits(config)
        assert splits.val.paths == [whole.paths[i] for i in held]
        assert splits.train.paths == [whole.paths[i] for i in keep]
        assert splits.val.groups is None


def test_a_track_column_without_the_setting_gets_one_notice(frames, caplog):
    with caplog.at_level(logging.WARNING, logger="clipadapt"):
        build_splits(par(frames))
    notices = [r.getMessage() for r in caplog.records if "val_group_column" in r.getMessage()]
    assert len(notices) == 1 and "set data.val_group_column=track" in notices[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clipadapt"):
        build_splits(par(frames, val_group_column="track"))
    assert not [r for r in caplog.records if "val_group_column" in r.getMessage()]


def test_a_misspelt_column_names_the_columns_and_the_closest(frames):
    with pytest.raises(ClipAdaptError) as err:
        build_splits(par(frames, val_group_column="trak"))
    message = str(err.value)
    assert message.startswith(f"data.val_group_column 'trak' is not a column of {frames / 'crops.csv'}; its columns "
                              "are ['img_path', 'track', 'clip', 'frame', 'hard', 'split',")
    assert "Did you mean 'track'?" in message


def test_too_few_groups_is_refused_with_the_count(shops, tmp_path):
    lines = ["img_path,shop,kind"] + [f"{shops / f'{i}.png'},s1,{('food', 'tools')[i % 2]}" for i in range(6)]
    (tmp_path / "one.csv").write_text("\n".join(lines) + "\n")
    config = DataConfig(format="manifest", train_manifest=tmp_path / "one.csv", attributes=["kind"],
                        val_group_column="shop", allow_outside_root=True)
    with pytest.raises(ClipAdaptError, match=r"the 6 train rows form one group \('s1'\), but a validation split by "
                                             r"group needs at least 2"):
        build_splits(config)
    with pytest.raises(ClipAdaptError, match="form 0 groups"):
        group_split([], 0.2, seed=0)


def test_every_group_but_one_at_most_goes_to_val():
    # 2 one-row groups at 0.9: the greedy draw would take both; one stays in train
    train, val = group_split(["a", "b"], 0.9, seed=0)
    assert len(train) == 1 and len(val) == 1
    # every group larger than twice the target: the nearest one still goes
    train, val = group_split(["a"] * 10 + ["b"] * 30, 0.05, seed=0)
    assert val.tolist() == list(range(10))


@pytest.mark.parametrize("change, words", [
    ({"format": "folder", "root": "x", "train_manifest": None},
     "format 'folder' does not read data.val_group_column (data.val_group_column is read by format manifest)"),
    ({"format": "synthetic-par", "train_manifest": None, "attributes": []},
     "format 'synthetic-par' does not read data.val_group_column (data.val_group_column is read by format manifest)"),
    ({"val_manifest": "val.csv"}, "data.val_group_column 'track' draws the validation split from train by group, but "
                                  "data.val_manifest gives one; remove one of them"),
])
def test_the_setting_is_refused_where_it_cannot_apply(change, words):
    data = {"format": "manifest", "train_manifest": "t.csv", "attributes": ["kind"], "val_group_column": "track",
            **change}
    with pytest.raises(ClipAdaptError) as err:
        validate_config({"data": data})
    assert words in str(err.value)
    with pytest.raises(ClipAdaptError):  # a DataConfig made in code is checked as well
        check_data_settings(DataConfig(**data))


def test_an_empty_column_name_is_a_config_error():
    with pytest.raises(ClipAdaptError, match="data.val_group_column"):
        validate_config({"data": {"format": "manifest", "val_group_column": ""}})
