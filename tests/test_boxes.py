"""Boxes in frames (issue 31, part 4): a manifest row naming a frame and a box predicts as
the same crop saved to a file does; both conventions cut the same pixels; a bad box is one
clear error naming its row, or under the skip policy a skipped row counted in the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import clipadapt
from clipadapt.cli.main import app
from clipadapt.data.boxes import XYWH, XYXY, BoxedImage, box_columns, boxed_items, parse_box
from clipadapt.data.images import BadImage
from clipadapt.errors import ClipAdaptError
from clipadapt.predict.places import collect_inputs
from clipadapt.synthetic.pedestrian_frames import write_pedestrian_frames
from clipadapt.synthetic.pedestrians import PEDESTRIAN_ATTRIBUTES

PROBS = [f"{a}:p" for a in PEDESTRIAN_ATTRIBUTES]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Frames with their crops saved as files, and a zero-shot multi-label run on the tiny
    CLIP: no training, and every pixel moves its probabilities (logit scale 100)."""
    base = tmp_path_factory.mktemp("boxes")
    root = write_pedestrian_frames(base / "frames", n_clips=2, frames_per_clip=3, people_per_clip=3, seed=5)
    config = {"data": {"format": "manifest", "task": "multilabel", "train_manifest": str(root / "crops.csv"),
                       "split_column": "split", "attribute_file": str(root / "attributes.json")},
              "backbone": {"preprocess": "letterbox"}, "method": {"name": "zeroshot"}}
    run = clipadapt.train(config, base / "run", device="cpu")
    return root, run


def test_a_box_read_from_its_frame_predicts_as_the_crop_saved_to_a_file(scene, tmp_path):
    root, run = scene
    frames = pd.read_csv(root / "frames.csv", keep_default_na=False)
    corners = frames.drop(columns=list(XYWH)).assign(x1=frames.x, y1=frames.y, x2=frames.x + frames.w,
                                                     y2=frames.y + frames.h)
    corners.to_csv(root / "corners.csv", index=False)
    from_file = run.predict(str(root / "crops.csv"))
    for manifest in ("frames.csv", "corners.csv"):
        boxed = run.predict(str(root / manifest))
        assert boxed["ok"].all() and len(boxed) == len(from_file) == 18
        gap = np.abs(boxed[PROBS].to_numpy() - from_file[PROBS].to_numpy()).max()
        assert gap < 1e-6, (manifest, gap)
        assert (boxed[list(PEDESTRIAN_ATTRIBUTES)].to_numpy() == from_file[list(PEDESTRIAN_ATTRIBUTES)].to_numpy()).all()
        # the frame is the row's path; its box and track follow it, so each row says which person it is
        assert boxed["path"].iloc[0] == str(root / frames["path"].iloc[0])
        assert list(boxed.columns[1:6]) == [*(XYWH if manifest == "frames.csv" else XYXY), "track"]
    # the probabilities differ between people: the box picks the person, not the whole frame
    assert np.abs(np.diff(from_file[PROBS].to_numpy()[:3], axis=0)).max() > 1e-3


def test_the_command_reads_boxes_too_and_writes_a_track_table(scene, tmp_path):
    root, run = scene
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["predict", str(root / "frames.csv"), "--checkpoint", str(run.path),
                                      "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    expected = run.predict(str(root / "frames.csv"))
    assert np.abs(written[PROBS].to_numpy() - expected[PROBS].to_numpy()).max() < 1e-6
    tracks = pd.read_csv(tmp_path / "out.tracks.csv")
    assert list(tracks["track"]) == list(range(6)) and (tracks["frames"] == 3).all()
    assert "6 tracks" in result.output


def _bad_manifest(root: Path, cells: dict) -> Path:
    frames = pd.read_csv(root / "frames.csv", keep_default_na=False).head(3)
    for column, value in cells.items():
        frames[column] = frames[column].astype(object)
        frames.loc[1, column] = value
    frames.to_csv(root / "bad.csv", index=False)
    return root / "bad.csv"


@pytest.mark.parametrize("cells, reason", [({"w": "wide"}, "w is 'wide', not a number"),
                                           ({"h": -40}, "positive width and height"),
                                           ({"x": 250}, "outside the 256 x 160 frame")])
def test_a_bad_box_names_its_row_and_the_fix_or_is_skipped_and_counted(scene, tmp_path, cells, reason):
    root, run = scene
    manifest = _bad_manifest(root, cells)
    with pytest.raises(ClipAdaptError) as caught:
        run.predict(str(manifest))
    message = str(caught.value)
    assert reason in message and f"{manifest} line 3" in message and "remove the row" in message
    skipped = run.predict(str(manifest), on_bad_image="skip")
    assert list(skipped["ok"]) == [True, False, True] and reason in skipped["error"].iloc[1]
    assert np.isnan(skipped[PROBS].iloc[1]).all()
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["predict", str(manifest), "--checkpoint", str(run.path), "--out", str(out),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "1 of 3 images skipped" in result.output
    listed = pd.read_csv(tmp_path / "out.skipped_images.csv")
    assert reason in listed["reason"].iloc[0]
    failed = CliRunner().invoke(app, ["predict", str(manifest), "--checkpoint", str(run.path), "--out",
                                      str(tmp_path / "f.csv"), "--device", "cpu", "--on-bad-image", "fail"])
    assert failed.exit_code == 2 and reason in failed.output and "Traceback" not in failed.output


def test_box_columns_parse_whole_pixels_and_refuse_half_given_boxes():
    assert box_columns(["path", "x", "y", "w", "h", "track"]) == XYWH
    assert box_columns(["path", "x1", "y1", "x2", "y2"]) == XYXY
    assert box_columns(["path", "x", "y"]) is None and box_columns(["path", "w", "h"]) is None
    with pytest.raises(ClipAdaptError, match=r"not \['h'\]"):
        box_columns(["x", "y", "w"], "m.csv")
    with pytest.raises(ClipAdaptError, match="both box conventions"):
        box_columns([*XYWH, *XYXY])
    assert parse_box(["10", "20", "30.4", "60.6"], XYWH) == (10, 20, 40, 81)
    assert parse_box([10, 20, 40, 81], XYXY) == (10, 20, 40, 81)
    for cells, convention in ((["1", "2", "0", "5"], XYWH), (["5", "2", "5.2", "9"], XYXY), (["1", "", "2", "3"], XYXY),
                              (["1", "nan", "2", "3"], XYWH)):
        with pytest.raises(ValueError):
            parse_box(cells, convention)


def test_a_missing_frame_is_the_bad_image_message_and_crops_never_pad_with_black(tmp_path):
    table = pd.DataFrame({"x": ["0", "oops"], "y": ["0", "0"], "w": ["4", "4"], "h": ["8", "8"]}, index=[0, 3])
    items = boxed_items([tmp_path / "gone.png", tmp_path / "gone.png"], table.astype("string"), tmp_path / "m.csv",
                        table.index)
    assert all(isinstance(item, BoxedImage) for item in items) and str(items[0]) == str(tmp_path / "gone.png")
    with pytest.raises(BadImage, match="not found"):
        items[0].open()
    with pytest.raises(BadImage, match=r"m.csv line 5: x is 'oops'"):
        items[1].open()
    Image.new("RGB", (10, 10), (200, 10, 10)).save(tmp_path / "f.png")
    edge = BoxedImage(tmp_path / "f.png", (6, 0, 11, 10), "m.csv line 2")
    with pytest.raises(BadImage, match=r"0 <= x1 < x2 <= 10"):
        edge.open()
    assert BoxedImage(tmp_path / "f.png", (6, 0, 10, 10), "").open().size == (4, 10)


def test_an_exported_file_cuts_the_boxes_as_the_run_folder_does(scene, tmp_path):
    pytest.importorskip("onnxruntime")
    root, run = scene
    exported = clipadapt.load(run.export(tmp_path / "run.onnx"))
    from_folder, from_file = run.predict(str(root / "frames.csv")), exported.predict(str(root / "frames.csv"))
    assert from_file["ok"].all() and len(from_file) == 18
    assert np.abs(from_file[PROBS].to_numpy() - from_folder[PROBS].to_numpy()).max() < 1e-5
    assert (from_file[list(PEDESTRIAN_ATTRIBUTES)].to_numpy() == from_folder[list(PEDESTRIAN_ATTRIBUTES)].to_numpy()).all()


def test_folders_and_plain_manifests_are_unchanged_and_ray_refuses_boxes(scene, tmp_path):
    root, run = scene
    paths, _ = collect_inputs([str(root / "crops.csv")])
    assert all(type(p) is not BoxedImage for p in paths)
    from clipadapt.workflow.predict import predict_run

    with pytest.raises(ClipAdaptError, match="local engines only"):
        predict_run([str(root / "frames.csv")], tmp_path / "o", checkpoint=run.path, ray=object())
    # training reads whole images: a manifest of boxes would train on whole frames, so it is refused
    config = {"data": {"format": "manifest", "task": "multilabel", "train_manifest": str(root / "frames.csv"),
                       "path_column": "path", "split_column": "split", "attribute_file": str(root / "attributes.json")},
              "method": {"name": "zeroshot"}}
    with pytest.raises(ClipAdaptError, match="cut the crops to files first"):
        clipadapt.train(config, tmp_path / "run", device="cpu")
