"""Synthetic street frames with tracked pedestrians (issue 31, parts 4-5): boxes inside the
frames, one person per track with one label set, clips split whole, hard frames of every
kind, crops equal to their boxes, and the same folder for the same seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipadapt.errors import ClipAdaptError
from clipadapt.synthetic.pedestrian_frames import HARD_KINDS, write_pedestrian_frames
from clipadapt.synthetic.pedestrians import PEDESTRIAN_ATTRIBUTES


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    write_pedestrian_frames(root, n_clips=4, frames_per_clip=5, people_per_clip=3, seed=3, hard_fraction=0.5)
    return root, pd.read_csv(root / "frames.csv", keep_default_na=False)


def test_every_box_lies_in_its_frame_and_holds_a_person(frames):
    root, table = frames
    assert len(table) == 4 * 5 * 3
    for path, rows in table.groupby("path"):
        image = np.asarray(Image.open(root / path), np.float32)
        height, width = image.shape[:2]
        assert (width, height) == (256, 160) and len(rows) == 3
        for x, y, w, h in rows[["x", "y", "w", "h"]].itertuples(index=False):
            assert 0 <= x and 0 <= y and x + w <= width and y + h <= height and w >= 1 and h >= 1
            assert h >= 2 * w - 1  # a standing person's box: twice as high as wide
    assert table["h"].min() < 0.5 * table["h"].max()  # far-away (small) people among them


def test_a_track_is_one_person_in_one_clip_moving_a_little(frames):
    _, table = frames
    for _, rows in table.groupby("track"):
        assert rows["clip"].nunique() == 1 and rows["split"].nunique() == 1
        assert len(rows) == 5 and sorted(rows["frame"]) == list(range(5))
        assert (rows[list(PEDESTRIAN_ATTRIBUTES)].nunique() == 1).all()  # same labels in every frame
        easy = rows[rows["hard"] == ""]
        if len(easy) > 1:  # full-size boxes keep their size within a few percent
            assert easy["h"].max() <= 1.1 * easy["h"].min()
    assert table.groupby("clip")["split"].nunique().max() == 1
    assert set(table["split"]) == {"train", "test"}
    assert set(table["hard"]) == {"", *HARD_KINDS}
    assert set(np.unique(table[list(PEDESTRIAN_ATTRIBUTES)])) == {0, 1}


def test_crops_are_their_boxes_cut_from_the_frames(frames):
    root, table = frames
    crops = pd.read_csv(root / "crops.csv", keep_default_na=False)
    assert list(crops["track"]) == list(table["track"]) and len(crops) == len(table)
    for i in (0, 17, 44):
        x, y, w, h = table.loc[i, ["x", "y", "w", "h"]]
        frame = np.asarray(Image.open(root / table.loc[i, "path"]))
        crop = np.asarray(Image.open(root / crops.loc[i, "img_path"]))
        assert np.array_equal(crop, frame[y:y + h, x:x + w])


def test_the_same_seed_gives_the_same_folder_and_another_seed_another(frames, tmp_path):
    root, table = frames
    again = write_pedestrian_frames(tmp_path / "a", n_clips=4, frames_per_clip=5, people_per_clip=3, seed=3,
                                    hard_fraction=0.5, crops=False)
    assert (again / "frames.csv").read_text() == (root / "frames.csv").read_text()
    assert not (again / "crops.csv").exists()
    first = table.loc[0, "path"]
    assert np.array_equal(np.asarray(Image.open(again / first)), np.asarray(Image.open(root / first)))
    other = write_pedestrian_frames(tmp_path / "b", n_clips=1, frames_per_clip=5, people_per_clip=3, seed=4,
                                    crops=False)
    assert (other / "frames.csv").read_text() != (root / "frames.csv").read_text()
    # other options in a folder of ours: rendered again from clean, no stale frame stays
    write_pedestrian_frames(again, n_clips=1, frames_per_clip=5, people_per_clip=3, seed=3, crops=False)
    assert len(list((again / "frames").iterdir())) == 5


def test_bad_options_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(ClipAdaptError, match="people per clip"):
        write_pedestrian_frames(tmp_path / "x", people_per_clip=9)
    with pytest.raises(ClipAdaptError, match="frame_size"):
        write_pedestrian_frames(tmp_path / "x", frame_size=(60, 40))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/frames.csv").write_text("path\n")
    with pytest.raises(ClipAdaptError, match="did not render"):
        write_pedestrian_frames(tmp_path / "mine")
