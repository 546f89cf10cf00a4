"""Bad label tables, table-driven through `clipadapt train`: each case is refused before
any work with one message naming the file (and line) and the fix, or, where the table
is merely unusual (BOM, UTF-16, repeated identical rows), read correctly."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.config import DataConfig
from clipadapt.data.formats import build_splits
from clipadapt.errors import ClipAdaptError

RUNNER = CliRunner()
HEADER = "img_path,weather\n"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """root/ with a.png ... f.png (and a sub-folder), plus one image outside the root."""
    base = tmp_path_factory.mktemp("tables")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate("abcdef"):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / f"{name}.png")
    Image.new("RGB", (8, 8)).save(root / "sub" / "g.png")
    Image.new("RGB", (8, 8)).save(base / "outside.png")
    return root


GOOD_TRAIN = HEADER + "a.png,clear\nb.png,cloudy\nc.png,clear\nd.png,cloudy\n"


def write(root: Path, name: str, content: str | bytes) -> Path:
    path = root / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def train_cli(root: Path, work: Path, train: str | bytes, test: str | bytes | None = None, **data):
    """`clipadapt train` on a manifest data set with these table contents (2 epochs of a micro model)."""
    cfg = {"backbone": {"name": "clipadapt-micro", "pretrained": None},
           "data": {"format": "manifest", "root": str(root), "attributes": ["weather"], "val_fraction": 0.0,
                    "train_manifest": str(write(work, "train.csv", train)), **data},
           "method": "linear_probe", "train": {"epochs": 1, "batch_size": 4, "device": "cpu"},
           "features": {"dir": str(work / "cache")}}
    if test is not None:
        cfg["data"]["test_manifest"] = str(write(work, "test.csv", test))
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    return RUNNER.invoke(app, ["train", str(work / "config.yaml"), "--out", str(work / "run"), "--quiet"])


# name -> (train table, test table, data options, words the message must hold)
REFUSED = {
    "misspelt label column": (HEADER.replace("weather", "wether") + "a.png,clear\n", None, {},
                              ["train.csv has no column 'weather'", "Did you mean 'wether'?"]),
    "column in other case": (HEADER.replace("weather", "Weather") + "a.png,clear\n", None, {},
                             ["no column 'weather'", "Did you mean 'Weather'?"]),
    "misspelt path column": ("img_pth,weather\na.png,clear\n", None, {}, ["no column 'img_path'", "Did you mean 'img_pth'?"]),
    "empty file": ("", None, {}, ["train.csv is empty (0 bytes)"]),
    "blank lines only": ("\n\n\n", None, {}, ["train.csv holds no table"]),
    "header without rows": (HEADER, None, {}, ["train.csv has a header", "but no data rows"]),
    "column named twice": ("img_path,weather,weather\na.png,clear,cloudy\n", None, {}, ["names the column 'weather' twice"]),
    "latin-1 bytes": ((HEADER + "a.png,clear\nb.png,nuageux\nc.png,pluvieux d'\xe9t\xe9\n").encode("latin-1"), None, {},
                      ["train.csv is not UTF-8 text: byte 0xe9 on line 4", "data.encoding"]),
    "unknown encoding name": (GOOD_TRAIN, None, {"encoding": "klingon-8"}, ["'data.encoding': 'klingon-8' is not an encoding"]),
    "same image, two labels": (GOOD_TRAIN + "a.png,cloudy\n", None, {},
                               ["train.csv line 2 and", "train.csv line 6 list the same image", "Keep one of the two rows"]),
    "empty path cell": (HEADER + "a.png,clear\n,cloudy\n", None, {}, ["train.csv line 3: empty 'img_path'"]),
    "unknown label in test": (GOOD_TRAIN, HEADER + "e.png,cloudi\n", {},
                              ["test.csv line 2: label 'cloudi'", "does not occur in the train split", "Did you mean 'cloudy'?"]),
    "test class absent from train": (GOOD_TRAIN, HEADER + "e.png,snowy\n", {},
                                     ["test.csv line 2: label 'snowy'", "known classes: ['clear', 'cloudy']"]),
    "path climbing out of the root": (GOOD_TRAIN + "../../../../../../etc/passwd,clear\n", None, {},
                                      ["train.csv line 6: image path '../../../../../../etc/passwd' points outside the "
                                       "data root", "(to /etc/passwd)", "data.allow_outside_root"]),
    "absolute path outside the root": (GOOD_TRAIN + "/etc/hostname,clear\n", None, {},
                                       ["image path '/etc/hostname' points outside the data root"]),
    "home-relative path": (GOOD_TRAIN + "~/.ssh/id_rsa,clear\n", None, {}, ["image path '~/.ssh/id_rsa' points outside"]),
    "ragged row": (HEADER + "a.png,clear\nb.png,cloudy,extra,more\n", None, {},
                   ["Cannot read", "train.csv: Error tokenizing data. C error: Expected 2 fields in line 3, saw 4. It must"]),
    "missing image": (GOOD_TRAIN + "zz.png,clear\n", None, {}, ["Image not found:", "zz.png (", "train.csv line 6)"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_table_is_refused_with_one_clear_message(images, tmp_path, case):
    train, test, data, words = REFUSED[case]
    result = train_cli(images, tmp_path, train, test, **data)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1, result.output  # one line: no traceback, no wrapped-in newline
    message = " ".join(result.output.split())
    for w in words:
        assert w in message, (w, message)
    assert message.startswith("error:") and "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()  # refused before any training


# name -> (table bytes, data options, expected (image name, label) rows)
READ = {
    "UTF-8 with BOM": (b"\xef\xbb\xbf" + GOOD_TRAIN.encode(), {}, None),
    "UTF-16 with BOM": (GOOD_TRAIN.encode("utf-16"), {}, None),
    "windows line ends": (GOOD_TRAIN.replace("\n", "\r\n").encode(), {}, None),
    "latin-1 when named": ((HEADER + "a.png,clear\nb.png,\xe9t\xe9\n").encode("latin-1"), {"encoding": "latin-1"},
                           [("a.png", "clear"), ("b.png", "\xe9t\xe9")]),
    "path inside the root via ..": (HEADER + "sub/../a.png,clear\nsub/g.png,cloudy\n", {},
                                    [("a.png", "clear"), ("g.png", "cloudy")]),
    "outside allowed on request": (HEADER + "../outside.png,clear\na.png,cloudy\n", {"allow_outside_root": True},
                                   [("outside.png", "clear"), ("a.png", "cloudy")]),
    "labels padded and capitalised": (HEADER + "a.png, Clear \nb.png,CLOUDY\n", {}, [("a.png", "clear"), ("b.png", "cloudy")]),
}


@pytest.mark.parametrize("case", sorted(READ))
def test_unusual_but_valid_tables_are_read(images, tmp_path, case):
    content, options, expected = READ[case]
    train = write(tmp_path, "train.csv", content)
    cfg = DataConfig(format="manifest", root=images, train_manifest=train, attributes=["weather"], val_fraction=0.0,
                     **options)
    data = build_splits(cfg).train
    rows = [(Path(p).name, data.task.attributes[0].classes[y]) for p, y in zip(data.paths, data.labels[:, 0])]
    assert rows == (expected or [("a.png", "clear"), ("b.png", "cloudy"), ("c.png", "clear"), ("d.png", "cloudy")])


def test_repeated_identical_rows_are_read_once_with_a_warning(images, tmp_path, caplog):
    train = write(tmp_path, "train.csv", GOOD_TRAIN + "a.png,clear\nc.png, clear\n")
    cfg = DataConfig(format="manifest", root=images, train_manifest=train, attributes=["weather"], val_fraction=0.0)
    with caplog.at_level(logging.WARNING, logger="clipadapt"):
        data = build_splits(cfg).train
    assert [Path(p).name for p in data.paths] == ["a.png", "b.png", "c.png", "d.png"]
    assert "lists 2 image(s) twice with the same labels" in caplog.text and "line 6" in caplog.text


def test_parquet_table_with_an_escaping_path_is_refused(images, tmp_path):
    train = tmp_path / "train.parquet"
    pd.DataFrame({"img_path": ["a.png", "../../secret.png"], "weather": ["clear", "cloudy"]}).to_parquet(train)
    cfg = DataConfig(format="manifest", root=images, train_manifest=train, attributes=["weather"])
    with pytest.raises(ClipAdaptError, match=r"train.parquet row 1: image path '\.\./\.\./secret.png' points outside"):
        build_splits(cfg)


def test_gss_table_with_an_escaping_or_repeated_image(images, tmp_path):
    root = tmp_path / "gss"
    (root / "train").mkdir(parents=True)
    (root / "img" / "1").mkdir(parents=True)
    for name in ("u1", "u2"):
        Image.new("RGB", (8, 8)).save(root / "img" / "1" / f"{name}.jpeg")
    table = "uuid,img_path,weather\nu1,img/1/u1.jpeg,clear\nu2,img/1/u2.jpeg,cloudy\n"
    (root / "train" / "weather.csv").write_text(table + "u1,img/1/u1.jpeg,clear\n")
    data = build_splits(DataConfig(format="gss", root=root, attributes=["weather"], val_fraction=0.0)).train
    assert len(data) == 2
    (root / "train" / "weather.csv").write_text(table + "u3,../../etc/passwd,clear\n")
    with pytest.raises(ClipAdaptError, match=r"weather.csv line 4: image path '\.\./\.\./etc/passwd' points outside"):
        build_splits(DataConfig(format="gss", root=root, attributes=["weather"]))


def test_par_pickle_cannot_send_a_run_outside_its_root(tmp_path):
    root = tmp_path / "par"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "p1.png")
    fields = {"description": "custom", "root": "/", "image_name": ["p1.png", "etc/passwd"],
              "label": np.array([[1], [0]]), "attr_name": ["hat"],
              "partition": {"train": np.array([0, 1]), "test": np.array([0])}}
    (root / "dataset_all.pkl").write_bytes(pickle.dumps(fields))
    cfg = DataConfig(format="par-pickle", root=root, task="multilabel", val_fraction=0.0)
    # the file's own root "/" is ignored (outside data.root): etc/passwd is looked for under root/ and is missing
    with pytest.raises(ClipAdaptError, match="1 of 2 images are missing") as info:
        build_splits(cfg)
    assert str(root / "etc" / "passwd") in str(info.value)
    fields["image_name"] = ["p1.png", "../../../../etc/passwd"]
    (root / "dataset_all.pkl").write_bytes(pickle.dumps(fields))
    with pytest.raises(ClipAdaptError, match=r"image path '\.\./\.\./\.\./\.\./etc/passwd' points outside"):
        build_splits(cfg)
