"""Bad images, table-driven: every case in tests/image_cases.py either decodes to the
right 8-bit RGB picture or is refused with its reason, never a traceback; and the
--on-bad-image / data.on_bad_image policy of predict, extract and train does what it says."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.data.image_dataset import ImageDataset
from clipadapt.data.images import BadImage, load_image
from clipadapt.errors import ClipAdaptError
from image_cases import UNUSABLE, USABLE, write_case

RUNNER = CliRunner()
# clipadapt silences Pillow's bomb warning at import (it refuses those images itself); pytest
# resets warning filters per test, so the module says the same.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def cli(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cases")
    for name in [*USABLE, *UNUSABLE]:
        write_case(folder, name)
    return folder


# ----------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("name", sorted(USABLE))
def test_usable_images_decode_to_upright_8bit_rgb(cases, name):
    _, colour, size = USABLE[name]
    image = load_image(cases / name)
    assert image.mode == "RGB" and image.size == size
    pixels = np.asarray(image).astype(int)
    if colour is not None:
        centre = pixels[size[1] // 2, size[0] // 2]
        assert np.abs(centre - np.array(colour)).max() <= 3, (name, centre, colour)


def test_exif_orientation_is_applied(cases):
    # stored landscape with red on the left; orientation 6 turns it upright: red on top, blue below
    pixels = np.asarray(load_image(cases / "exif_rotated.jpg")).astype(int)
    top, bottom = pixels[2, 10], pixels[-3, 10]
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


@pytest.mark.parametrize("name", sorted(UNUSABLE))
def test_unusable_images_are_refused_with_their_reason(cases, name):
    words = UNUSABLE[name][1]
    with pytest.raises(BadImage) as info:
        load_image(cases / name, where="train.csv line 7")
    message = str(info.value)
    assert words in info.value.reason and words in message
    assert str(cases / name) in message and "train.csv line 7" in message
    assert "Traceback" not in message and "\n" not in message


def test_sixteen_bit_values_keep_their_gradient(tmp_path):
    # Pillow's own convert clips every 16-bit value above 255 to white; ours scales.
    ramp = (np.linspace(0, 65535, 64).reshape(1, 64).repeat(4, 0)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    red = np.asarray(load_image(tmp_path / "ramp.png"))[0, :, 0].astype(int)
    assert red[0] == 0 and red[-1] == 255 and np.all(np.diff(red) >= 0) and len(set(red.tolist())) > 50


def test_pixel_limit_can_be_raised_for_genuine_huge_images(tmp_path, monkeypatch):
    import clipadapt.data.images as images

    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 50_000)
    with pytest.raises(BadImage, match="60,000 pixels exceeds the limit of 50,000"):
        load_image(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 60_000)
    assert load_image(tmp_path / "big.png").size == (300, 200)


def test_dataset_flags_bad_images_and_raises_in_strict_mode(cases):
    names = ["gray.png", "zero_bytes.jpg", "cmyk.jpg", "html.jpg"]
    transform = lambda im: __import__("torch").from_numpy(np.array(im.resize((8, 8)))).permute(2, 0, 1).float()
    flagged = ImageDataset([cases / n for n in names], transform, on_error="flag")
    oks = [flagged[i][2] for i in range(len(names))]
    assert oks == [True, False, True, False]
    assert flagged[1][0].shape == flagged[0][0].shape  # a bad row still batches
    assert "empty file" in flagged.error_for(1) and flagged.error_for(0) == ""
    strict = ImageDataset([cases / n for n in names], transform, on_error="raise")
    with pytest.raises(ClipAdaptError, match="empty file"):
        strict[1]


def test_worker_process_errors_reach_the_user_without_a_traceback(cases):
    from torch.utils.data import DataLoader

    dataset = ImageDataset([cases / "truncated.jpg"], lambda im: np.zeros(1), on_error="raise")
    with pytest.raises(ClipAdaptError) as info:
        list(DataLoader(dataset, num_workers=1))
    message = str(info.value)
    assert message.startswith("Unreadable image:") and "Traceback" not in message and "truncated" in message


# ----------------------------------------------------------------------------- the policy, end to end
def _class_image(path: Path, label: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.integers(0, 50, (32, 32, 3)) + 90 * label).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, cases):
    """A manifest data set (3 classes, 30 train / 12 test) with bad images planted in both splits."""
    root = tmp_path_factory.mktemp("data")
    rows = {"train": [], "test": []}
    for split, n in (("train", 30), ("test", 12)):
        for i in range(n):
            name = f"{split}_{i}.png"
            _class_image(root / name, i % 3, i + (100 if split == "test" else 0))
            rows[split].append((name, ["dark", "mid", "light"][i % 3]))
    for split, bad in (("train", ["truncated.jpg", "html.jpg", "zero_bytes.jpg"]), ("test", ["header_bomb.png"])):
        for name in bad:
            (root / f"{split}_{name}").write_bytes((cases / name).read_bytes())
            rows[split].append((f"{split}_{name}", "mid"))
        rows[split].append((f"{split}_missing.jpg", "dark"))
    for split in rows:
        pd.DataFrame(rows[split], columns=["img_path", "shade"]).to_csv(root / f"{split}.csv", index=False)
    return root


def _config(folder: Path, data: Path, cache: Path, **data_options) -> Path:
    cfg = {
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "manifest", "train_manifest": str(data / "train.csv"), "test_manifest": str(data / "test.csv"),
                 "attributes": ["shade"], "val_fraction": 0.2, **data_options},
        "method": {"name": "mhadapter"},
        "train": {"epochs": 2, "batch_size": 16, "warmup_epochs": 1, "patience": None, "device": "cpu"},
        "features": {"dir": str(cache)},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_training_fails_on_the_first_bad_image_by_default(dataset, tmp_path):
    result = cli("train", _config(tmp_path, dataset, tmp_path / "cache"), "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 2, result.output
    assert "train_missing.jpg" in result.output and "Image not found" in result.output
    assert "--on-bad-image skip" in result.output and "data.on_bad_image: skip" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # the failed run left no folder holding only its config


def test_training_on_an_unreadable_image_names_it_once_with_the_skip_fix(cases, tmp_path):
    # an image folder data set: its rows come from the paths themselves
    for split, n in (("train", 6), ("test", 3)):
        for label, shade in enumerate(["dark", "light"]):
            (tmp_path / "data" / split / shade).mkdir(parents=True)
            for i in range(n):
                _class_image(tmp_path / "data" / split / shade / f"{i}.png", label, 10 * label + i)
    bad = tmp_path / "data" / "train" / "dark" / "cut.jpg"
    bad.write_bytes((cases / "truncated.jpg").read_bytes())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "folder", "root": str(tmp_path / "data"), "val_fraction": 0.0},
        "method": {"name": "mhadapter"}, "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
        "features": {"dir": str(tmp_path / "cache")}}))
    result = cli("train", config, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 2, result.output
    assert result.output.count(str(bad)) == 1, result.output
    assert "truncated" in result.output and "--on-bad-image skip" in result.output
    assert "data.on_bad_image: skip" in result.output and "skipped_images.csv" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def skipping_run(dataset, tmp_path_factory):
    work = tmp_path_factory.mktemp("skiprun")
    config = _config(work, dataset, work / "cache", on_bad_image="skip")
    result = cli("train", config, "--out", work / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return work / "run"


def test_training_with_skip_lists_every_left_out_image(skipping_run):
    listed = pd.read_csv(skipping_run / "skipped_images.csv")
    names = sorted(Path(p).name for p in listed["path"])
    assert names == sorted(["train_truncated.jpg", "train_html.jpg", "train_zero_bytes.jpg", "train_missing.jpg",
                            "test_header_bomb.png", "test_missing.jpg"])
    reasons = dict(zip((Path(p).name for p in listed["path"]), listed["reason"]))
    assert "truncated" in reasons["train_truncated.jpg"] and "decompression bomb" in reasons["test_header_bomb.png"]
    assert listed["where"].str.contains(r"(?:train|test): .*\.csv line \d+").all()
    card = json.loads((skipping_run / "card.json").read_text())
    assert card["data"]["train"] + card["data"]["val"] == 30 and card["data"]["test"] == 12


def test_training_with_skip_says_how_many_were_left_out(dataset, tmp_path, caplog):
    config = _config(tmp_path, dataset, tmp_path / "cache", on_bad_image="skip")
    with caplog.at_level(logging.WARNING, logger="clipadapt"):
        result = cli("train", config, "--out", tmp_path / "run", "--quiet", "--set", "train.epochs=0")
    assert result.exit_code == 0, result.output
    text = caplog.text
    assert "skipped 4 of 34 train images" in text and "skipped 2 of 14 test images" in text
    assert "skipped_images.csv" in text


def test_train_option_overrides_the_config(dataset, tmp_path):
    config = _config(tmp_path, dataset, tmp_path / "cache")  # data.on_bad_image defaults to fail
    result = cli("train", config, "--out", tmp_path / "run", "--quiet", "--on-bad-image", "skip", "--set", "train.epochs=0")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "run" / "skipped_images.csv")) == 6


def test_predict_skips_by_default_and_lists_the_skipped(skipping_run, cases, tmp_path):
    out = tmp_path / "pred.csv"
    result = cli("predict", cases, "--checkpoint", skipping_run, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    unusable = sorted(n for n in UNUSABLE if n not in ("missing.jpg", "folder.jpg"))  # a folder scan finds files only
    assert sorted(Path(p).name for p in table.loc[~table["ok"], "path"]) == unusable
    assert table.loc[table["ok"], "shade"].isin(["dark", "mid", "light"]).all()
    listed = pd.read_csv(tmp_path / "pred.skipped_images.csv")
    assert sorted(Path(p).name for p in listed["path"]) == unusable
    assert listed["reason"].str.len().gt(0).all() and not listed["reason"].str.contains("Replace the file").any()
    assert f"{len(unusable)} of {len(table)} images skipped" in result.output


def test_predict_writes_no_skip_list_when_nothing_was_skipped(skipping_run, cases, tmp_path):
    out = tmp_path / "pred.csv"
    (tmp_path / "pred.skipped_images.csv").write_text("path,reason,where\nold.jpg,from an earlier run,\n")
    result = cli("predict", cases / "gray.png", "--checkpoint", skipping_run, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"wrote 1 rows to {out}; 0 of 1 images skipped\n" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.csv"]  # the stale list went with the old output


def test_predict_fail_stops_at_the_first_bad_image_and_writes_nothing(skipping_run, cases, tmp_path):
    out = tmp_path / "pred.csv"
    result = cli("predict", cases / "gray.png", cases / "truncated.jpg", "--checkpoint", skipping_run, "--out", out,
                 "--on-bad-image", "fail", "--quiet")
    assert result.exit_code == 2
    assert "truncated.jpg" in result.output and "truncated" in result.output and "--on-bad-image skip" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_extract_skips_by_default_and_lists_the_skipped_in_the_store(dataset, tmp_path):
    config = _config(tmp_path, dataset, tmp_path / "cache", on_bad_image="fail")
    result = cli("extract", config, "--quiet")
    assert result.exit_code == 0, result.output
    assert "6 images skipped" in result.output
    done = json.loads(result.output[result.output.index("{"):result.output.rindex("}") + 1])
    for split in ("train", "val", "test"):
        listed = pd.read_csv(tmp_path / "cache" / done[split]["key"] / "skipped_images.csv")
        assert len(listed) == 6
    assert done["train"]["images"] + done["val"]["images"] == 30


def test_extract_fail_names_the_bad_image(dataset, tmp_path):
    result = cli("extract", _config(tmp_path, dataset, tmp_path / "cache"), "--on-bad-image", "fail", "--quiet")
    assert result.exit_code == 2 and "Image not found" in result.output and "Traceback" not in result.output
