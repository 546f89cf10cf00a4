"""Hostile files, through the commands users run: pickles and checkpoints that would run
code while loading (os.system, eval, exec, subprocess) are refused with a clear message,
and the marker file their payload would create never appears; damaged or forged
safetensors, cards and arrays are one clear error, not a traceback."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from clipadapt.cli.main import app

RUNNER = CliRunner()


def cli(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


class Payload:
    """Unpickling this calls `how` with a command that creates the marker file."""

    def __init__(self, how: str, marker: Path):
        self.how, self.marker = how, marker

    def __reduce__(self):
        touch = f"touch '{self.marker}'"
        if self.how == "os.system":
            return os.system, (touch,)
        if self.how == "eval":
            return builtins.eval, (f"__import__('os').system({touch!r})",)
        if self.how == "exec":
            return builtins.exec, (f"import os; os.system({touch!r})",)
        return subprocess.Popen, (["touch", str(self.marker)],)


PAYLOADS = ["os.system", "eval", "exec", "subprocess.Popen"]
# what the refusal names: the callable the file asked for (os.system pickles as posix.system)
NAMED = {"os.system": "system", "eval": "eval", "exec": "exec", "subprocess.Popen": "Popen"}


def refused_cleanly(result, marker: Path, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert not marker.exists(), "the payload ran"
    assert result.output.startswith("error: ") and "Traceback" not in result.output, result.output
    for w in words:
        assert w in result.output, (w, result.output)


# ----------------------------------------------------------------------------- PAR annotation pickles
@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("how", PAYLOADS)
def test_malicious_dataset_pickle_runs_nothing(tmp_path, how, protocol):
    marker = tmp_path / "pwned"
    (tmp_path / "par").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "par" / "a.png")
    fields = {"image_name": ["a.png"], "label": np.array([[1]]), "attr_name": ["hat"],
              "partition": {"train": np.array([0])}, "description": Payload(how, marker)}
    (tmp_path / "par" / "dataset_all.pkl").write_bytes(pickle.dumps(fields, protocol=protocol))
    config = tmp_path / "par.yaml"
    config.write_text(yaml.safe_dump({"backbone": {"name": "clipadapt-micro", "pretrained": None},
                                      "data": {"format": "par-pickle", "root": str(tmp_path / "par"), "task": "multilabel"},
                                      "method": "linear_probe", "features": {"dir": str(tmp_path / "cache")}}))
    result = cli("train", config, "--out", tmp_path / "run", "--quiet")
    refused_cleanly(result, marker, "dataset_all.pkl wants to run", NAMED[how], "refused")


def test_pickled_object_array_in_a_converted_par_copy_runs_nothing(tmp_path):
    from clipadapt.data.par import convert_par_pickle

    marker = tmp_path / "pwned"
    (tmp_path / "src").mkdir()
    fields = {"image_name": ["a.png"], "label": np.array([[1]]), "attr_name": ["hat"], "partition": {"train": np.array([0])}}
    (tmp_path / "src" / "dataset_all.pkl").write_bytes(pickle.dumps(fields))
    convert_par_pickle(tmp_path / "src" / "dataset_all.pkl", tmp_path / "par")
    np.save(tmp_path / "par" / "labels.npy", np.array([Payload("os.system", marker)], dtype=object), allow_pickle=True)
    config = tmp_path / "par.yaml"
    config.write_text(yaml.safe_dump({"backbone": {"name": "clipadapt-micro", "pretrained": None},
                                      "data": {"format": "par-pickle", "root": str(tmp_path / "par"), "task": "multilabel"},
                                      "method": "linear_probe"}))
    result = cli("train", config, "--out", tmp_path / "run", "--quiet")
    refused_cleanly(result, marker, "labels.npy")


# ----------------------------------------------------------------------------- checkpoints from strangers
def _torch_file(path: Path, payload: Payload, legacy: bool) -> Path:
    torch.save({"state_dict": {"weight": torch.zeros(2, 2)}, "epoch": 3, "optimizer": {"hook": payload}}, path,
               _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("how", PAYLOADS)
def test_malicious_mhadapter_checkpoint_runs_nothing(tmp_path, how, legacy):
    marker = tmp_path / "pwned"
    path = _torch_file(tmp_path / "model.pth.tar-10", Payload(how, marker), legacy)
    result = cli("import-mhadapter", path, "--attribute", "weather", "--out", tmp_path / "run",
                 "--backbone", "clipadapt-micro", "--pretrained", "random")
    refused_cleanly(result, marker, "model.pth.tar-10 wants to run", NAMED[how], "never runs code")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("how", ["os.system", "subprocess.Popen"])
def test_malicious_promptpar_checkpoint_runs_nothing(tmp_path, how):
    marker = tmp_path / "pwned"
    path = _torch_file(tmp_path / "PromptPAR.pth", Payload(how, marker), legacy=False)
    result = cli("import-promptpar", path, "--dataset", "pa100k", "--out", tmp_path / "run")
    refused_cleanly(result, marker, "PromptPAR.pth wants to run", NAMED[how])
    assert not (tmp_path / "run").exists()


def test_malicious_backbone_weights_run_nothing(tmp_path, micro_backbone):
    marker = tmp_path / "pwned"
    state = {k: v.clone() for k, v in micro_backbone.model.state_dict().items()}
    state["logit_scale"] = Payload("os.system", marker)
    torch.save(state, tmp_path / "weights.pt")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"backbone": {"name": "clipadapt-micro", "pretrained": str(tmp_path / "weights.pt")},
                                      "data": {"format": "synthetic-gss", "root": str(tmp_path / "gss"),
                                               "synthetic": {"n_train": 8, "n_test": 4, "image_size": 32}}}))
    result = cli("train", config, "--out", tmp_path / "run", "--quiet")
    refused_cleanly(result, marker, "weights.pt", "wants to run posix.system")
    assert "weights_only=False" not in result.output  # never advise the unsafe load


# ----------------------------------------------------------------------------- run folders tampered with
@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile_run")
    for i in range(8):
        Image.new("RGB", (16, 16), (30 * i,) * 3).save(work / f"{i}.png")
    (work / "train.csv").write_text("img_path,shade\n" + "".join(f"{i}.png,{'ab'[i % 2]}\n" for i in range(8)))
    config = work / "c.yaml"
    config.write_text(yaml.safe_dump({
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "manifest", "train_manifest": str(work / "train.csv"), "attributes": ["shade"], "val_fraction": 0},
        "method": "linear_probe", "train": {"epochs": 1, "batch_size": 4, "device": "cpu"},
        "features": {"dir": str(work / "cache")}}))
    result = cli("train", config, "--out", work / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return work


def _copy_run(run_folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run_folder / "run", tmp_path / "run"))


def test_pickle_posing_as_a_safetensors_checkpoint_runs_nothing(run_folder, tmp_path):
    run = _copy_run(run_folder, tmp_path)
    marker = tmp_path / "pwned"
    (run / "checkpoint.safetensors").write_bytes(pickle.dumps(Payload("os.system", marker)))
    result = cli("predict", run_folder / "0.png", "--checkpoint", run, "--out", tmp_path / "p.csv", "--quiet")
    refused_cleanly(result, marker, "checkpoint.safetensors is damaged or not a safetensors file")


def test_truncated_checkpoint_is_one_clear_error(run_folder, tmp_path):
    run = _copy_run(run_folder, tmp_path)
    data = (run / "checkpoint.safetensors").read_bytes()
    (run / "checkpoint.safetensors").write_bytes(data[: len(data) // 2])
    result = cli("predict", run_folder / "0.png", "--checkpoint", run, "--out", tmp_path / "p.csv", "--quiet")
    refused_cleanly(result, tmp_path / "none", "checkpoint.safetensors is damaged")


@pytest.mark.parametrize("card", [[1, 2], {"method": "linear_probe"}, {"method": 5, "backbone": "x", "task": {}}],
                         ids=["a list", "no backbone", "wrong types"])
def test_forged_card_is_one_clear_error(run_folder, tmp_path, card):
    run = _copy_run(run_folder, tmp_path)
    (run / "card.json").write_text(json.dumps(card))
    result = cli("predict", run_folder / "0.png", "--checkpoint", run, "--out", tmp_path / "p.csv", "--quiet")
    refused_cleanly(result, tmp_path / "none", "card.json is not a clipadapt run card")


def test_pickle_posing_as_resume_state_runs_nothing(run_folder, tmp_path):
    run = tmp_path / "resumed"
    run.mkdir()
    marker = tmp_path / "pwned"
    (run / "resume.safetensors").write_bytes(pickle.dumps(Payload("os.system", marker)))
    result = cli("train", run_folder / "c.yaml", "--out", run, "--resume", "--quiet")
    refused_cleanly(result, marker, "resume.safetensors is damaged or not a safetensors file")


def test_yaml_config_cannot_build_python_objects(tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "c.yaml"
    config.write_text(f"train: !!python/object/apply:os.system [\"touch '{marker}'\"]\n")
    result = cli("train", config, "--out", tmp_path / "run")
    refused_cleanly(result, marker, "is not valid YAML")
