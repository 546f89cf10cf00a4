"""A run folder's life through `clipadapt train`: an interrupted run is continued with
--resume (which says from which epoch), started over with --restart (which says what it
discarded), and refused without either; a run that fails leaves no folder, or one with
FAILED.txt saying why, and never loses a folder or a resume state it did not make."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.engine.trainer import SupervisedSteps

RUNNER = CliRunner()
QUIET = ("--quiet",)


def cli(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A manifest data set: 3 shades, 18 train / 6 test images of 32 px."""
    root = tmp_path_factory.mktemp("shades")
    for split, n in (("train", 18), ("test", 6)):
        rows = []
        for i in range(n):
            rng = np.random.default_rng(i + (100 if split == "test" else 0))
            Image.fromarray((rng.integers(0, 50, (32, 32, 3)) + 90 * (i % 3)).astype(np.uint8)).save(root / f"{split}_{i}.png")
            rows.append((f"{split}_{i}.png", ["dark", "mid", "light"][i % 3]))
        pd.DataFrame(rows, columns=["img_path", "shade"]).to_csv(root / f"{split}.csv", index=False)
    return root


def write_config(folder: Path, data: Path, attribute: str = "shade") -> Path:
    cfg = {
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "manifest", "train_manifest": str(data / "train.csv"),
                 "test_manifest": str(data / "test.csv"), "attributes": [attribute], "val_fraction": 0.2},
        "method": {"name": "mhadapter"},
        "train": {"epochs": 2, "batch_size": 8, "warmup_epochs": 1, "patience": None, "device": "cpu"},
        "features": {"dir": str(data / "cache")},
    }
    path = folder / f"config-{attribute}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class PowerCut(Exception):
    """The machine going away after the first epoch (any non-clipadapt failure)."""


@pytest.fixture(scope="module")
def interrupted(data, tmp_path_factory) -> Path:
    """A run folder whose run stopped after epoch 1 of 2: a resume state, no card."""
    work = tmp_path_factory.mktemp("interrupted")
    original = SupervisedSteps.start_epoch

    def cut_at_epoch_2(self, epoch):
        if epoch == 1:
            raise PowerCut("the lights went out")
        return original(self, epoch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SupervisedSteps, "start_epoch", cut_at_epoch_2)
        result = cli("train", write_config(work, data), "--out", work / "run", *QUIET)
    assert isinstance(result.exception, PowerCut), result.output
    assert "the interrupted run is kept" in result.output and "--resume" in result.output
    return work / "run"


@pytest.fixture()
def run(interrupted, tmp_path) -> Path:
    """A copy of the interrupted run, for one test to continue or discard."""
    return Path(shutil.copytree(interrupted, tmp_path / "run"))


@pytest.fixture()
def epochs_started(monkeypatch) -> list[int]:
    """The epochs the trainer starts, in order (0-based)."""
    started, original = [], SupervisedSteps.start_epoch

    def record(self, epoch):
        started.append(epoch)
        return original(self, epoch)

    monkeypatch.setattr(SupervisedSteps, "start_epoch", record)
    return started


def test_an_interrupted_run_keeps_its_resume_state_and_says_how_to_go_on(interrupted):
    assert (interrupted / "resume.safetensors").is_file() and not (interrupted / "card.json").exists()
    note = (interrupted / "FAILED.txt").read_text()
    assert "PowerCut: the lights went out" in note
    assert "--resume" in note and "--restart" in note


def test_rerun_without_resume_is_refused_naming_both_choices(run, data, tmp_path):
    state = (run / "resume.safetensors").read_bytes()
    result = cli("train", write_config(tmp_path, data), "--out", run, *QUIET)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "interrupted run (1 epoch done" in result.output
    assert "--resume to continue" in result.output and "--restart to discard" in result.output
    assert (run / "resume.safetensors").read_bytes() == state  # nothing written is lost


def test_resume_says_where_it_continues_and_finishes(run, data, tmp_path, epochs_started):
    result = cli("train", write_config(tmp_path, data), "--out", run, "--resume", *QUIET)
    assert result.exit_code == 0, result.output
    assert f"resuming from epoch 2 of 2 (1 done; {run / 'resume.safetensors'})" in result.output
    assert epochs_started == [1]
    assert (run / "card.json").is_file()
    assert not (run / "resume.safetensors").exists() and not (run / "FAILED.txt").exists()


def test_restart_discards_the_progress_and_starts_over(run, data, tmp_path, epochs_started):
    result = cli("train", write_config(tmp_path, data), "--out", run, "--restart", *QUIET)
    assert result.exit_code == 0, result.output
    assert f"--restart: discarded the interrupted run in {run} (1 epoch done); starting from epoch 1" in result.output
    assert epochs_started == [0, 1]
    assert len(json.loads((run / "history.json").read_text())) == 2
    assert not (run / "FAILED.txt").exists()


def test_resume_and_restart_together_are_refused(run, data, tmp_path):
    result = cli("train", write_config(tmp_path, data), "--out", run, "--resume", "--restart", *QUIET)
    assert result.exit_code == 2 and "Choose one" in result.output
    assert (run / "resume.safetensors").is_file()


def test_resume_with_nothing_to_resume_says_so_and_trains(data, tmp_path, epochs_started):
    result = cli("train", write_config(tmp_path, data), "--out", tmp_path / "fresh", "--resume", *QUIET)
    assert result.exit_code == 0, result.output
    assert f"nothing to resume in {tmp_path / 'fresh'}" in result.output and "starting from epoch 1" in result.output
    assert epochs_started == [0, 1]
    # a finished run has nothing to resume either, and is left as it is
    card = (tmp_path / "fresh" / "card.json").read_bytes()
    again = cli("train", write_config(tmp_path, data), "--out", tmp_path / "fresh", "--resume", *QUIET)
    assert again.exit_code == 2 and "already holds a finished run (card.json): nothing to resume" in again.output
    assert (tmp_path / "fresh" / "card.json").read_bytes() == card


def test_a_run_failing_on_its_data_leaves_no_folder(data, tmp_path):
    out = tmp_path / "new" / "run"
    result = cli("train", write_config(tmp_path, data, attribute="shdae"), "--out", out, *QUIET)
    assert result.exit_code == 2 and "shdae" in result.output, result.output
    assert not (tmp_path / "new").exists()  # nor the parent it created for it


def test_a_failing_run_keeps_a_folder_it_did_not_create_with_a_note(data, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    result = cli("train", write_config(tmp_path, data, attribute="shdae"), "--out", out, *QUIET)
    assert result.exit_code == 2
    assert (out / "notes.txt").read_text() == "my notes"
    note = (out / "FAILED.txt").read_text()
    assert "shdae" in note and "run the same command again" in note
    # fixed, the same command finishes and the note goes
    done = cli("train", write_config(tmp_path, data), "--out", out, *QUIET)
    assert done.exit_code == 0, done.output
    assert (out / "card.json").is_file() and not (out / "FAILED.txt").exists()


def test_resume_with_seeds_keeps_the_finished_seeds(data, tmp_path, epochs_started):
    config = write_config(tmp_path, data)
    assert cli("train", config, "--out", tmp_path / "runs", "--seeds", "0", *QUIET).exit_code == 0
    card = (tmp_path / "runs" / "seed-0" / "card.json").read_bytes()
    epochs_started.clear()
    result = cli("train", config, "--out", tmp_path / "runs", "--seeds", "0,1", "--resume", *QUIET)
    assert result.exit_code == 0, result.output
    assert f"seed 0: finished in {tmp_path / 'runs' / 'seed-0'}, kept" in result.output
    assert epochs_started == [0, 1]  # seed 1 alone trained
    assert (tmp_path / "runs" / "seed-0" / "card.json").read_bytes() == card
    assert json.loads((tmp_path / "runs" / "seeds_summary.json").read_text())["seeds"] == [0, 1]



def test_a_failed_adapt_run_leaves_no_folder(data, tmp_path):
    config = write_config(tmp_path, data, attribute="shdae")
    result = cli("adapt", config, "--out", tmp_path / "run", "--set", "method.name=microclip", *QUIET)
    assert result.exit_code == 2 and "shdae" in result.output, result.output
    assert not (tmp_path / "run").exists()
