"""The index of data formats: names known without importing a reader, each format
declared in its own module and checking its own data.* settings, user readers still
registrable as plain functions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from clipadapt.config import DataConfig, validate_config
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.formats import build_splits
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DATA_FORMATS, FORMAT_SPECIFIC_KEYS, DataFormat, check_data_settings
from clipadapt.registry import Registry
from clipadapt.synthetic.formats import WRITERS, renderer_options
from clipadapt.task import Attribute, TaskSpec


def test_a_location_is_imported_on_first_use_only():
    reg = Registry("thing")
    reg.register_at("later", "clipadapt_no_such_module:thing")
    assert reg.names() == ["later"] and "later" in reg  # known without the import
    with pytest.raises(ClipAdaptError, match="thing 'later' is registered at 'clipadapt_no_such_module:thing', "
                                             "which cannot be imported"):
        reg.get("later")
    with pytest.raises(ClipAdaptError, match="written 'package.module:attribute'"):
        reg.register_at("bad", "no_colon_here")


def test_checking_a_config_imports_the_named_format_only():
    code = ("import sys\nfrom clipadapt.config import validate_config\n"
            "validate_config({'data': {'format': 'folder'}, 'backbone': {'name': 'clipadapt-micro', 'pretrained': None}})\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('clipadapt.data.', 'clipadapt.synthetic')))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "clipadapt.data.folder" in loaded
    for other in ("clipadapt.data.gss", "clipadapt.data.manifest", "clipadapt.data.par", "clipadapt.synthetic",
                  "clipadapt.data.formats"):
        assert other not in loaded, loaded


@pytest.mark.parametrize("name", DATA_FORMATS.names())
def test_every_format_declares_itself_and_accepts_its_defaults(name):
    fmt = DATA_FORMATS.get(name)
    assert isinstance(fmt, DataFormat)
    assert set(fmt.reads) <= set(FORMAT_SPECIFIC_KEYS), fmt.reads
    assert fmt.summary, name  # `clipadapt list formats` says what it reads
    check_data_settings(DataConfig(format=name))  # the defaults are no mistake


def test_keys_of_other_formats_are_refused_and_those_read_are_not():
    # Every format-specific key set for a format: refused exactly where the format does not read it.
    values = {"train_manifest": "t.csv", "test_manifest": "t.csv", "val_manifest": "v.csv", "split_column": "split",
              "attribute_file": "a.yaml", "dataset": "caltech101", "synthetic": {"seed": 1},
              "par": {"split_index": 1}, "val_group_column": "track"}
    assert set(values) == set(FORMAT_SPECIFIC_KEYS)
    for name in DATA_FORMATS.names():
        reads = DATA_FORMATS.get(name).reads
        for key, value in values.items():
            cfg = DataConfig(format=name, **{key: value})
            if key in reads:
                check_data_settings(cfg)
            else:
                with pytest.raises(ClipAdaptError, match=f"format '{name}' does not read data.{key}"):
                    check_data_settings(cfg)


def test_multilabel_is_refused_where_the_classes_are_single_label():
    for name in ("gss", "folder", "benchmark", "synthetic-gss", "synthetic-finegrained", "synthetic-coop"):
        with pytest.raises(ClipAdaptError, match=f"format '{name}' reads single-label classes"):
            check_data_settings(DataConfig(format=name, task="multilabel"))
    for name in ("manifest", "pa100k", "peta", "rap", "wider", "par-pickle", "synthetic-par"):
        check_data_settings(DataConfig(format=name, task="multilabel"))


def test_synthetic_options_are_the_renderers_keywords():
    assert renderer_options(WRITERS["synthetic-gss"]) == ["n_train", "n_test", "seed", "image_size", "label_fraction"]
    assert "classes" not in renderer_options(WRITERS["synthetic-coop"])
    validate_config({"data": {"format": "synthetic-coop", "synthetic": {"n_val": 2, "species_tones": True}}})
    with pytest.raises(ClipAdaptError, match=r"Unknown data.synthetic option\(s\) \['n_train_per_class'\]"):
        validate_config({"data": {"format": "synthetic-coop", "synthetic": {"n_train_per_class": 2}}})


def test_a_plain_reader_function_is_still_a_format(tmp_path, monkeypatch):
    task = TaskSpec((Attribute("shade", ("dark", "light")),))
    labels = np.array([[k % 2] for k in range(8)], dtype=np.int64)

    def read_shades(cfg):
        images = LabelledImages([tmp_path / f"{k}.png" for k in range(8)], labels, task)
        return images, None, images

    monkeypatch.setitem(DATA_FORMATS._items, "shades-from-code", None)  # removed again after the test
    DATA_FORMATS.register("shades-from-code", read_shades, overwrite=True)
    cfg = validate_config({"data": {"format": "shades-from-code", "val_fraction": 0.25, "dataset": "anything"}}).data
    splits = build_splits(cfg)  # a user's reader may read any key: nothing refused
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 2, 8)


def test_every_problem_of_the_data_section_is_named_at_once():
    with pytest.raises(ClipAdaptError) as info:
        check_data_settings(DataConfig(format="folder", task="multilabel", synthetic={"seed": 1}, attributes=["a", "b"]))
    message = str(info.value)
    assert "does not read data.synthetic" in message and "reads single-label classes" in message
    assert "holds one attribute (the class)" in message and message.count("; ") >= 2


def test_list_formats_says_what_each_reads_and_its_keys():
    from typer.testing import CliRunner

    from clipadapt.cli.main import app

    result = CliRunner().invoke(app, ["list", "formats"], env={"COLUMNS": "250"})  # manifest's line: 214
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and [line.split(":")[0] for line in lines] == DATA_FORMATS.names()
    assert "pa100k: PA100K: annotation.mat and data/ (26 attributes); keys: data.par" in lines
    assert any(line.startswith("manifest: CSV or Parquet") and "data.split_column" in line for line in lines)
