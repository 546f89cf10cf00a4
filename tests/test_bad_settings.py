"""Bad settings, table-driven through `clipadapt train`: unknown keys (with the closest
known one suggested), wrong types and impossible values are each refused with one
message naming the key, before any work starts (no run folder, no feature store)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from clipadapt.cli.main import app

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A valid config: a micro CLIP on a 3-class manifest (4 images per class)."""
    root = tmp_path_factory.mktemp("settings")
    rows = ["img_path,shade"]
    for i in range(12):
        Image.new("RGB", (16, 16), (80 * (i % 3),) * 3).save(root / f"{i}.png")
        rows.append(f"{i}.png,{['dark', 'mid', 'light'][i % 3]}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return {"backbone": {"name": "clipadapt-micro", "pretrained": None},
            "data": {"format": "manifest", "train_manifest": str(root / "train.csv"), "attributes": ["shade"],
                     "val_fraction": 0.25},
            "method": {"name": "mhadapter", "params": {}},
            "train": {"epochs": 1, "batch_size": 4, "device": "cpu"},
            "features": {"dir": str(root / "cache")}}


def merged(base: dict, change: dict) -> dict:
    out = copy.deepcopy(base)
    for section, values in change.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section].update(values)
        else:
            out[section] = values
    return out


def run(tmp_path: Path, config_text: str, *extra: str):
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    return RUNNER.invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "--quiet", *extra])


def refused(result, tmp_path: Path, words: list[str]) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    for w in words:
        assert w in result.output, (w, result.output)
    assert not (tmp_path / "run").exists()  # refused before the run folder, the data or the model


# name -> (change to the valid config, words of the message)
CASES = {
    # unknown keys, with the closest known one
    "misspelt section": ({"trian": {"epochs": 1}}, ["unknown key 'trian'. Did you mean 'train'?"]),
    "misspelt key": ({"train": {"lrr": 0.1}}, ["unknown key 'train.lrr'. Did you mean 'lr'?"]),
    "misspelt data key": ({"data": {"val_fractoin": 0.1}}, ["unknown key 'data.val_fractoin'. Did you mean 'val_fraction'?"]),
    "misspelt method param": ({"method": {"name": "mhadapter", "params": {"beat": 0.3}}},
                              ["unknown key 'method.params.beat' for method 'mhadapter'. Did you mean 'beta'?"]),
    "misspelt method": ({"method": {"name": "mhadaptor"}}, ["method.name 'mhadaptor' does not exist. Did you mean 'mhadapter'?"]),
    "misspelt format": ({"data": {"format": "manifets"}}, ["data.format 'manifets' does not exist. Did you mean 'manifest'?"]),
    "misspelt backbone": ({"backbone": {"name": "clipadapt-micor"}},
                          ["backbone.name 'clipadapt-micor' does not exist. Did you mean 'clipadapt-micro'?"]),
    # wrong types
    "text for an integer": ({"train": {"epochs": "ten"}}, ["'train.epochs': Input should be a valid integer", "(got 'ten')"]),
    "text for a number": ({"train": {"lr": "fast"}}, ["'train.lr': Input should be a valid number", "(got 'fast')"]),
    "fraction for an integer": ({"train": {"batch_size": 2.5}}, ["'train.batch_size'", "(got 2.5)"]),
    "word for a boolean": ({"train": {"end_to_end": "maybe"}}, ["'train.end_to_end': Input should be a valid boolean"]),
    "value for a list": ({"data": {"attributes": "shade"}}, ["'data.attributes': Input should be a valid list"]),
    "value for a section": ({"backbone": "ViT-B-16"}, ["'backbone' is a section, not a value (got 'ViT-B-16')"]),
    "text for heads": ({"method": {"name": "mhadapter", "params": {"heads": "four"}}},
                       ["Invalid method.params for 'mhadapter': 'heads' must be a whole number or a mapping of names "
                        "to whole numbers (got 'four'). Known params:"]),
    "list for heads": ({"method": {"name": "mhadapter", "params": {"heads": [4, 2]}}},
                       ["'heads' must be a whole number or a mapping of names to whole numbers (got [4, 2])"]),
    "number for descriptions": ({"method": {"name": "microclip", "params": {"descriptions": 3}}},
                                ["'descriptions' must be a text or a mapping of names to lists of texts (got 3)"]),
    # impossible values
    "blend above 1": ({"method": {"name": "mhadapter", "params": {"beta": 1.5}}}, ["beta must be in [0, 1]", "got 1.5"]),
    "blend below 0": ({"method": {"name": "clip_adapter", "params": {"blend_ratio": -0.1}}},
                      ["'clip_adapter'", "'blend_ratio': Input should be greater than or equal to 0"]),
    "heads not dividing the width": ({"method": {"name": "mhadapter", "params": {"heads": 5}}},
                                     ["method.params.heads=5 does not divide the embedding width 32 of backbone "
                                      "'clipadapt-micro'; use one of [1, 2, 4, 8, 16, 32]"]),
    "per-attribute heads not dividing": ({"method": {"name": "mhadapter", "params": {"heads": {"shade": 3}}}},
                                         ["method.params.heads[shade]=3 does not divide"]),
    "tap block beyond the model": ({"method": {"name": "mhadapter", "params": {"tap_block": 7}}},
                                   ["method.params.tap_block=7, but backbone 'clipadapt-micro' has blocks 1..2"]),
    "validation fraction of 1.5": ({"data": {"val_fraction": 1.5}}, ["'data.val_fraction': Input should be less than 1"]),
    "zero shots": ({"data": {"shots": 0}}, ["'data.shots': Input should be greater than or equal to 1"]),
    "negative epochs": ({"train": {"epochs": -1}}, ["'train.epochs': Input should be greater than or equal to 0"]),
    "zero batch": ({"train": {"batch_size": 0}}, ["'train.batch_size': Input should be greater than or equal to 1"]),
    "threshold of 0": ({"train": {"threshold": 0}}, ["'train.threshold': Input should be greater than 0"]),
    "threshold of 1": ({"train": {"threshold": 1}}, ["'train.threshold': Input should be less than 1"]),
    "zero learning rate": ({"train": {"lr": 0}}, ["'train.lr': Input should be greater than 0"]),
    "min lr above lr": ({"train": {"lr": 0.01, "min_lr": 0.1}}, ["min_lr (0.1) is above lr (0.01)"]),
    "beta of Adam at 1": ({"train": {"betas": [0.9, 1.0]}}, ["Adam's betas must each be in [0, 1), got [0.9, 1.0]"]),
    "momentum above 1": ({"train": {"optimizer": "sgd", "momentum": 1.5}}, ["'train.momentum'"]),
    "zero patience": ({"train": {"patience": 0}}, ["'train.patience': Input should be greater than or equal to 1"]),
    "unknown device": ({"train": {"device": "gpu"}}, ["'train.device': 'gpu' is not a device; use auto, cpu, cuda"]),
    "unknown loss": ({"train": {"loss": "hinge"}}, ["'train.loss': Input should be 'auto', 'ce'"]),
    "zero views": ({"features": {"train_views": 0}}, ["'features.train_views': Input should be greater than or equal to 1"]),
    "unknown encoding": ({"data": {"encoding": "klingon-8"}}, ["'data.encoding': 'klingon-8' is not an encoding"]),
    "unknown bad-image policy": ({"data": {"on_bad_image": "ignore"}}, ["'data.on_bad_image': Input should be 'fail' or 'skip'"]),
    "negative workers": ({"train": {"num_workers": -2}}, ["'train.num_workers'"]),
    # data.* settings the chosen format checks itself, or does not read at all
    "renderer options on a manifest": ({"data": {"synthetic": {"n_train": 3}}},
                                       ["format 'manifest' does not read data.synthetic (data.synthetic is read by "
                                        "format synthetic-coop / synthetic-finegrained / synthetic-gss / synthetic-par)"]),
    "PAR options on a manifest": ({"data": {"par": {"split_index": 1}}}, ["does not read data.par", "pa100k / par-pickle"]),
    "benchmark name on a manifest": ({"data": {"dataset": "caltech101"}},
                                     ["does not read data.dataset (data.dataset is read by format benchmark)"]),
    "split column beside a test manifest": ({"data": {"split_column": "split", "test_manifest": "test.csv"}},
                                            ["data.split_column 'split' puts every split in data.train_manifest"]),
    "misspelt renderer option": ({"data": {"format": "synthetic-gss", "train_manifest": None, "attributes": [],
                                           "synthetic": {"n_trian": 4}}},
                                 ["Unknown data.synthetic option(s) ['n_trian'] for format 'synthetic-gss'"]),
    "unknown PAR option value": ({"data": {"format": "pa100k", "train_manifest": None, "par": {"uncertain": "maybe"}}},
                                 ["Invalid data.par options: 'uncertain'"]),
    "unknown benchmark": ({"data": {"format": "benchmark", "train_manifest": None, "dataset": "flowers"}},
                          ["'flowers' is not one. Did you mean 'oxford_flowers'?"]),
    "two attributes for class folders": ({"data": {"format": "folder", "train_manifest": None, "attributes": ["a", "b"]}},
                                         ["format 'folder' holds one attribute (the class)"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_setting_is_refused_before_any_work(base, tmp_path, case):
    change, words = CASES[case]
    refused(run(tmp_path, yaml.safe_dump(merged(base, change))), tmp_path, words)


def test_several_mistakes_are_reported_together(base, tmp_path):
    config = merged(base, {"train": {"lrr": 1, "epochs": "ten"}, "method": {"name": "mhadapter", "params": {"heads": 5}}})
    result = run(tmp_path, yaml.safe_dump(config))
    # schema mistakes first (both named); the checks that need the schema to hold come once it does
    refused(result, tmp_path, ["unknown key 'train.lrr'", "'train.epochs'"])


# name -> (config file text, extra CLI args, words)
FILE_CASES = {
    "key written twice": ("train:\n  lr: 0.1\n  lr: 0.2\n", [], ["key 'lr' appears twice in one section (lines 2 and 3)"]),
    "python object tag": ("train: !!python/object/apply:os.system ['touch pwned']\n", [],
                          ["is not valid YAML", "could not determine a constructor for the tag"]),
    "not a mapping": ("- train\n- data\n", [], ["must hold a mapping of sections"]),
    "broken YAML": ("train: {lr: 0.1\n", [], ["is not valid YAML"]),
    "--set without =": ("{}\n", ["--set", "train.lr"], ["--set expects key=value"]),
    "--set into a value": ("train: {lr: 0.1}\n", ["--set", "train.lr.max=1"], ["--set train.lr.max=1: 'lr' is a value, not a section"]),
    "--set unknown key": ("{}\n", ["--set", "train.epoch=3"], ["unknown key 'train.epoch'. Did you mean 'epochs'?"]),
    "--set a bad value": ("train: {lr: 0.1}\n", ["--set", "train.lr=fast"],
                          ["error: Invalid --set train.lr=fast: 'train.lr': Input should be a valid number"]),
    "--set a bad param": ("method: {name: mhadapter}\n", ["--set", "train.epochs=2", "--set", "method.params.heads=x"],
                          ["error: Invalid --set method.params.heads=x: ", "'heads' must be a whole number or"]),
    "--set breaking a rule": ("train: {lr: 0.1}\n", ["--set", "train.min_lr=0.5"],
                              ["error: Invalid --set train.min_lr=0.5: 'train': min_lr (0.5) is above lr (0.1)"]),
    "file wrong, --set fine": ("train: {lr: fast}\n", ["--set", "train.epochs=2"],
                               ["config.yaml: 'train.lr': Input should be a valid number"]),
    "--set a key the format does not read": ("data: {format: manifest, train_manifest: t.csv, attributes: [x]}\n",
                                             ["--set", "data.dataset=caltech101"],
                                             ["error: Invalid --set data.dataset=caltech101: format 'manifest' does not "
                                              "read data.dataset"]),
    "--set broken YAML": ("{}\n", ["--set", "train.betas=[0.9,"], ["--set train.betas=[0.9,: the value is not valid YAML"]),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_config_file_or_override_is_refused(tmp_path, case, monkeypatch):
    text, extra, words = FILE_CASES[case]
    monkeypatch.chdir(tmp_path)
    refused(run(tmp_path, text, *extra), tmp_path, words)
    assert not (tmp_path / "pwned").exists()


def test_more_shots_than_a_class_holds_is_refused_before_the_model(base, tmp_path):
    config = merged(base, {"data": {"shots": 4}})  # 4 per class, minus the validation images, leaves 3
    result = run(tmp_path, yaml.safe_dump(config))
    assert result.exit_code == 2, result.output
    assert "data.shots=4 asks for 4 training images per class of 'shade'" in result.output
    assert "Lower data.shots to at most 3" in result.output
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
    assert not Path(base["features"]["dir"]).exists()  # no feature was extracted
