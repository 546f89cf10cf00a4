"""One manifest with a split column (data.split_column), and empty label cells: reported,
counted per attribute, and left out of that attribute's loss."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from clipadapt.config import DataConfig
from clipadapt.data.formats import build_splits
from clipadapt.engine.losses import AttributeLoss
from clipadapt.errors import ClipAdaptError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("manifest-splits")
    for i in range(10):
        Image.new("RGB", (8, 8), (20 * i, 0, 0)).save(base / f"{i}.png")
    return base


def manifest(root, body: str, **data) -> DataConfig:
    (root / "all.csv").write_text("img_path,colour,shape,split\n" + body)
    return DataConfig(format="manifest", train_manifest=root / "all.csv", attributes=["colour", "shape"],
                      split_column="split", **data)


ALL_SPLITS = ("0.png,red,round,train\n1.png,blue,round,train\n2.png,red,square,train\n3.png,blue,square,Train\n"
              "4.png,red,round,val\n5.png,blue,square,val\n6.png,red,round,test\n7.png,blue,square, test \n")


def test_one_manifest_holds_train_val_and_test(root):
    splits = build_splits(manifest(root, ALL_SPLITS))
    assert [len(splits.train), len(splits.val), len(splits.test)] == [4, 2, 2]
    assert [p.name for p in splits.test.paths] == ["6.png", "7.png"]
    assert splits.task.attributes[0].classes == ("blue", "red")
    assert splits.val.labels.tolist() == [[1, 0], [0, 1]]
    assert splits.test.sources[1].endswith("all.csv line 9")


def test_without_val_rows_the_validation_split_is_drawn_from_train(root):
    body = "".join(line for line in ALL_SPLITS.splitlines(keepends=True) if ",val" not in line)
    splits = build_splits(manifest(root, body, val_fraction=0.5))
    assert len(splits.train) + len(splits.val) == 4 and len(splits.val) == 2 and len(splits.test) == 2


@pytest.mark.parametrize("value", ["validation", ""])
def test_an_unknown_split_value_names_the_row_and_the_allowed_values(root, value):
    with pytest.raises(ClipAdaptError) as err:
        build_splits(manifest(root, ALL_SPLITS + f"8.png,red,round,{value}\n"))
    assert str(err.value) == (f"{root / 'all.csv'} line 10: split is '{value}'; the allowed values are train, val, "
                              "test. Fix the cell (data.split_column).")


def test_split_column_with_other_manifests_or_no_train_rows_is_refused(root):
    with pytest.raises(ClipAdaptError, match="remove data.val_manifest / data.test_manifest"):
        build_splits(manifest(root, ALL_SPLITS, test_manifest=root / "all.csv"))
    with pytest.raises(ClipAdaptError, match="has no row with split 'train'"):
        build_splits(manifest(root, "0.png,red,round,test\n"))


def test_an_image_in_two_splits_is_refused(root):
    with pytest.raises(ClipAdaptError, match="line 2 and .*line 10 list the same image"):
        build_splits(manifest(root, ALL_SPLITS + "0.png,red,round,test\n"))


def test_unknown_test_label_names_its_line_in_the_one_manifest(root):
    with pytest.raises(ClipAdaptError, match=r"all.csv line 10: label 'green' of 'colour' does not occur"):
        build_splits(manifest(root, ALL_SPLITS + "8.png,green,round,test\n"))


def test_empty_label_cells_are_reported_counted_and_left_out_of_the_loss(root, caplog):
    body = ALL_SPLITS.replace("1.png,blue,round", "1.png,,round").replace("2.png,red,square", "2.png,,square")
    body = body.replace("7.png,blue,square", "7.png,blue,")
    with caplog.at_level(logging.WARNING, logger="clipadapt"):
        splits = build_splits(manifest(root, body))
    assert (f"{root / 'all.csv'} (split train): empty label cells: 'colour' 2 of 4 rows (first: "
            f"{root / 'all.csv'} line 3). Each such row is left out of that attribute's loss and metrics.") in caplog.text
    assert "(split test): empty label cells: 'shape' 1 of 2 rows" in caplog.text
    assert ("labelled images per attribute (train / val / test, of 4 / 2 / 2 images): colour 2 / 2 / 2; "
            "shape 4 / 2 / 1.") in caplog.text
    labels = torch.as_tensor(splits.train.labels)
    assert labels[:, 0].tolist() == [1, -1, -1, 0]
    # the loss of 'colour' only sees its two labelled rows: changing the others' logits changes nothing
    loss = AttributeLoss("ce", [np.array([1, 1]), np.array([2, 2])])
    logits = [torch.randn(4, 2), torch.randn(4, 2)]
    moved = [logits[0].clone(), logits[1]]
    moved[0][1:3] += 5.0
    assert torch.allclose(loss(logits, labels), loss(moved, labels))


def test_fully_labelled_manifests_say_nothing(root, caplog):
    with caplog.at_level(logging.WARNING, logger="clipadapt"):
        build_splits(manifest(root, ALL_SPLITS))
    assert caplog.text == ""


def test_the_shipped_example_reads_the_table_its_comment_shows(root):
    from pathlib import Path

    from clipadapt.config import load_config

    (root / "example.csv").write_text("img_path,split,colour,shape\n0.png,train,red,round\n1.png,train,blue,square\n"
                                      "2.png,val,blue,square\n3.png,test,red,\n")
    example = Path(__file__).parent.parent / "configs" / "custom" / "manifest.yaml"
    cfg = load_config(example, [f"data.train_manifest={root / 'example.csv'}", f"data.root={root}"])
    splits = build_splits(cfg.data)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [2, 1, 1]
    assert splits.test.labels.tolist() == [[1, -1]]
