"""No silent chance (issue 32, the first hour): a class word the backbone never learned is
named before the run, a run whose selected result is at chance says so whether it trained or
not, and the "did not learn" advice fits the method.

The reported case: 200 grayscale crops, classes `face` (a word the embedded tiny CLIP
learned) and `background` (one it never saw); zero-shot answered `background` for every
test image, 50% = the majority, with no warning and `no_progress: false`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from clipadapt.backbone import create_backbone
from clipadapt.cli.main import app
from clipadapt.config import validate_config
from clipadapt.engine.progress import no_progress_message, selected_balanced_accuracy
from clipadapt.errors import ClipAdaptWarning
from clipadapt.methods import build_method
from clipadapt.methods.text_check import check_class_texts, known_words
from clipadapt.task import Attribute, TaskSpec
from clipadapt.workflow import train_run

KNOWN_WORDS = "non face"  # the fix of the issue: words the embedded model learned (zero-shot 60.0 there)


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("clipadapt-tiny", "embedded")


def write_crops(root: Path, classes=("face", "background"), n_train: int = 20, n_test: int = 8, size: int = 32,
                blank: bool = False) -> Path:
    """root/{train,test}/<class>/*.png, grayscale: a bright blob for the first class, noise for
    the others; `blank`: every image the same grey, so nothing can tell the classes apart."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for split, count in (("train", n_train), ("test", n_test)):
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                if blank:
                    pixels = np.full((size, size), 128.0)
                elif k == 0:
                    cx, cy = rng.uniform(size * 0.35, size * 0.65, 2)
                    pixels = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < (size * 0.3) ** 2, 230.0, 30.0)
                else:
                    pixels = rng.uniform(0, 255, (size, size))
                Image.fromarray(pixels.astype(np.uint8), "L").save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    return write_crops(tmp_path_factory.mktemp("crops"))


def config(root: Path, method: str, train: dict | None = None, **data) -> dict:
    return {"data": {"format": "folder", "root": str(root), **data}, "method": method, "train": train or {}}


def read_run(run: Path) -> tuple[dict, dict]:
    return tuple(json.loads((run / name).read_text()) for name in ("metrics.json", "card.json"))


# ------------------------------------------------------------------ unknown class words
def test_an_unknown_class_word_is_named_before_a_zero_shot_run_and_known_words_silence_it(tmp_path, tiny, crops):
    words = set(known_words(tiny))
    assert {"face", "non"} <= words and "background" not in words  # what this test relies on
    with pytest.warns(ClipAdaptWarning) as caught:
        outcome = train_run(validate_config(config(crops, "zeroshot")), tmp_path / "run", progress=False, backbone=tiny)
    said = [str(w.message) for w in caught if "never learned" in str(w.message)]
    assert len(said) == 1
    assert "attribute 'class': background (background)" in said[0] and "face (" not in said[0]
    assert "data.class_words: {class: {background: <words>}}" in said[0]
    assert said[0] in read_run(outcome.run_dir)[0]["warnings"]
    # the fix it names
    cfg = validate_config(config(crops, "zeroshot", class_words={"class": {"background": KNOWN_WORDS}}))
    outcome = train_run(cfg, tmp_path / "fixed", progress=False, backbone=tiny)
    assert not any("never learned" in w for w in outcome.warnings)


def test_every_method_that_reads_class_names_is_told_and_the_others_are_not(tiny):
    task = TaskSpec((Attribute("class", ("background", "face")),))
    for method in ("mhadapter", "clip_adapter", "coop"):  # training runs: a warning, not a refusal
        notes = check_class_texts(build_method(method, tiny, task), stop=True, name_unknown=True)
        assert len(notes) == 1 and "background (background)" in notes[0], method
    for method in ("linear_probe", "majority"):
        assert check_class_texts(build_method(method, tiny, task), name_unknown=True) == [], method
    # a backbone that learned every token (here: random weights, like a real CLIP) never warns
    micro = create_backbone("clipadapt-micro", None)
    assert check_class_texts(build_method("zeroshot", micro, task), name_unknown=True) == []


# ------------------------------------------------------------------ at chance, trained or not
def test_a_zero_shot_run_at_chance_says_so_in_terminal_metrics_card_and_report(tmp_path):
    root = write_crops(tmp_path / "data", classes=("face", "road"), blank=True)  # known words, blind images
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config(root, "zeroshot")))
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "warning: zeroshot is no better than chance: its selected result is at chance on validation" in result.output
    metrics, card = read_run(tmp_path / "run")
    for record in (metrics, card):
        assert record["at_chance"] is True and record["no_progress"] is False
        assert any("no better than chance" in w for w in record["warnings"])
    assert "no better than chance" in (tmp_path / "run" / "report.html").read_text().split('class="facts"')[0]


def test_a_learning_run_is_not_flagged(tmp_path, tiny, crops):
    cfg = validate_config(config(crops, "linear_probe", {"epochs": 10}))
    outcome = train_run(cfg, tmp_path / "run", progress=False, backbone=tiny)
    metrics, card = read_run(outcome.run_dir)
    assert metrics["mean"]["balanced_accuracy"] > 0.5
    for record in (metrics, card):
        assert record["at_chance"] is False and record["no_progress"] is False and "warnings" not in record


def test_the_majority_baseline_is_recorded_at_chance_without_alarm(tmp_path, tiny, crops):
    outcome = train_run(validate_config(config(crops, "majority")), tmp_path / "run", progress=False, backbone=tiny)
    metrics, card = read_run(outcome.run_dir)
    assert metrics["at_chance"] is True and card["at_chance"] is True
    assert outcome.warnings == [] and "warnings" not in card


def test_a_trained_run_without_validation_is_read_on_test():
    history = [{"epoch": 1, "train_loss": 0.7}, {"epoch": 2, "train_loss": 0.5}]
    test = {"mean": {"balanced_accuracy": 0.01}}
    assert selected_balanced_accuracy(history, 2, lambda: pytest.fail("no validation to read"), test) == (0.01, "test")


# ------------------------------------------------------------------ the advice fits the method
def test_the_did_not_learn_advice_fits_the_method(tiny):
    task = TaskSpec((Attribute("class", ("face", "road")),))
    reasons = ["the validation loss did not move over 3 epochs (it stayed at 0.6931)"]
    probe = no_progress_message(build_method("linear_probe", tiny, task), reasons)
    assert "linear_probe" not in probe.split(" did not learn")[1] and "class names" not in probe
    assert "train.lr" in probe
    text = no_progress_message(build_method("mhadapter", tiny, task), reasons)
    assert "data.class_words" in text and "method.name=linear_probe" in text
