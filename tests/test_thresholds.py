"""Per-attribute decision thresholds (train.thresholds) and Platt scaling (train.calibrate=platt):
the cut search against hand computations and brute force, the Platt fit on known data, the
method's buffers and checkpoint, and a multi-label run end to end (validation only, the test
scores at fixed and tuned thresholds, predict / ONNX / serve deciding the same)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from clipadapt.engine.calibrate import fit_platt
from clipadapt.engine.checkpoint import build_card, load_run, write_checkpoint
from clipadapt.engine.thresholds import best_cut, logit, mapped_threshold
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import build_method
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec

RUNNER = CliRunner()


# ------------------------------------------------------------------ the cut search
def test_the_best_cut_of_a_hand_computed_example():
    d = np.array([3.0, 2.0, 1.0, 0.0, -1.0])
    y = np.array([1, 0, 1, 0, 0])
    # top 3 positive: F1 = 2*2 / (2*2 + 1 + 0) = 0.8; balanced = (1 + 2/3) / 2
    f1 = best_cut(d, y, "f1", 0.0)
    assert f1.cut == 0.5 and f1.score == pytest.approx(0.8)
    assert f1.score_fixed == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))  # d > 0: the same three rows
    balanced = best_cut(d, y, "balanced", 2.5)
    assert balanced.cut == 0.5 and balanced.score == pytest.approx((1 + 2 / 3) / 2)
    assert balanced.score_fixed == pytest.approx((0.5 + 1.0) / 2)  # d > 2.5: only the first row


def brute_force_best(d, y, setting):
    """The best score over every cut just below or above each value."""
    return max(_score(d > cut, y, setting) for cut in np.concatenate([d - 1e-9, d + 1e-9]))


@pytest.mark.parametrize("setting", ["f1", "balanced"])
def test_the_cut_search_finds_the_brute_force_optimum_and_decides_as_scored(setting):
    rng = np.random.default_rng(1)
    for trial in range(30):
        n = int(rng.integers(5, 60))
        d = np.round(rng.normal(size=n), 1)  # rounded: ties between rows
        y = (rng.random(n) < rng.uniform(0.1, 0.6)).astype(int)
        y[0], y[1] = 1, 0
        y[rng.random(n) < 0.1] = -1  # unlabelled rows are left out
        keep = y != -1
        choice = best_cut(d, y, setting, 0.0)
        assert choice.score == pytest.approx(brute_force_best(d[keep], y[keep], setting)), trial
        pred = d[keep] > choice.cut  # the chosen cut gives the score it reports
        assert choice.score == pytest.approx(_score(pred, y[keep], setting))


def _score(pred, y, setting):
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    return (2 * tp / (2 * tp + fp + pos - tp) if tp else 0.0) if setting == "f1" else 0.5 * (tp / pos + (neg - fp) / neg)


def test_ties_keep_the_fixed_cut_and_a_one_sided_attribute_keeps_it_too():
    d = np.array([2.0, 1.0, -1.0, -2.0])
    y = np.array([1, 1, 0, 0])  # every cut in (-1, 1) is perfect: the one nearest the fixed cut wins
    assert best_cut(d, y, "f1", logit(0.45)).cut == 0.0  # the only midpoint between 1 and -1
    assert best_cut(d, np.array([0, 0, 0, -1]), "f1", 0.3).cut == 0.3  # no positive: nothing to choose on
    assert best_cut(d, np.array([1, 1, 1, 1]), "balanced", -0.2).cut == -0.2


def test_a_mapped_threshold_decides_as_the_cut_on_calibrated_probabilities():
    rng = np.random.default_rng(2)
    d = rng.normal(scale=4, size=5000)
    for temperature, bias, cut in ((1.0, 0.0, 0.3), (2.5, -1.2, -0.7), (0.4, 2.0, 1.1)):
        p = 1 / (1 + np.exp(-(d / temperature + bias)))
        assert ((p > mapped_threshold(cut, temperature, bias)) == (d > cut)).all()


# ------------------------------------------------------------------ Platt
def test_platt_recovers_a_known_scale_and_bias_and_lowers_the_nll():
    rng = np.random.default_rng(3)
    d = rng.normal(scale=3, size=40_000)
    y = (rng.random(d.size) < 1 / (1 + np.exp(-(0.5 * d - 1.0)))).astype(int)
    logits = np.stack([np.zeros_like(d), d], axis=1)  # p = sigmoid(z1 - z0) = sigmoid(d)
    fit = fit_platt(logits, y)
    assert fit.scale == pytest.approx(0.5, abs=0.03) and fit.bias == pytest.approx(-1.0, abs=0.05)
    assert fit.nll_after < fit.nll_before and fit.rows == d.size
    nothing = fit_platt(logits[:4], np.full(4, -1))
    assert (nothing.scale, nothing.bias, nothing.rows) == (1.0, 0.0, 0)


@pytest.fixture(scope="module")
def par_task():
    return TaskSpec((Attribute("Hat", BINARY_CLASSES, template="A pedestrian wearing a hat"),
                     Attribute("Female", BINARY_CLASSES, template="A female pedestrian")), multilabel=True)


def test_the_method_applies_its_bias_and_the_checkpoint_holds_bias_and_thresholds(tmp_path, micro_backbone, par_task):
    method = build_method("linear_probe", micro_backbone, par_task).eval()
    images = torch.randn(3, 3, micro_backbone.image_size, micro_backbone.image_size)
    with torch.no_grad():
        raw = method.forward_images(images)
        method.set_temperatures([2.0, 1.0])
        method.set_biases([-1.5, 0.25])
        calibrated = method.forward_images(images)
    for a, (t, b) in enumerate([(2.0, -1.5), (1.0, 0.25)]):
        d = raw[a][:, 1] - raw[a][:, 0]
        assert torch.allclose(torch.softmax(calibrated[a], -1)[:, 1], torch.sigmoid(d / t + b), atol=1e-6)
    assert "decision_threshold" not in method.trained_state()  # the default 0.5 is not written
    method.set_thresholds([0.3, 0.45])
    write_checkpoint(tmp_path / "run", method, build_card(method, seed=0))
    stored = load_file(str(tmp_path / "run" / "checkpoint.safetensors"))
    assert stored["platt_bias"].tolist() == pytest.approx([-1.5, 0.25]) and stored["decision_threshold"].tolist() == [0.3, 0.45]
    loaded, _ = load_run(tmp_path / "run", backbone=micro_backbone)
    assert loaded.thresholds() == [0.3, 0.45] and loaded.biases() == pytest.approx([-1.5, 0.25])
    with pytest.raises(ClipAdaptError, match="in \\(0, 1\\)"):
        method.set_thresholds([0.0, 0.5])


def test_a_bias_is_refused_on_an_attribute_with_more_than_two_classes(micro_backbone, weather_task):
    method = build_method("linear_probe", micro_backbone, weather_task)
    with pytest.raises(ClipAdaptError, match="two-class attributes only"):
        method.set_biases([0.5])


# ------------------------------------------------------------------ a run end to end
def cli(*args):
    from clipadapt.cli.main import app

    return RUNNER.invoke(app, [str(a) for a in args])


def par_config(folder: Path, root: Path, **train) -> Path:
    cfg = {
        "backbone": {"name": "clipadapt-tiny", "pretrained": "embedded", "preprocess": "letterbox"},
        "data": {"format": "synthetic-par", "root": str(root), "val_fraction": 0.3,
                 "synthetic": {"n_train": 240, "n_test": 90, "seed": 0, "image_size": 48}},
        "method": {"name": "linear_probe"},
        "train": {"lr": 5e-2, "weight_decay": 0.0, "epochs": 6, "warmup_epochs": 1, "patience": None,
                  "thresholds": "f1", "calibrate": "platt", **train},
        "features": {"dir": str(folder / "cache")},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def tuned_runs(tmp_path_factory):
    """The same run trained twice on data that differ only in the test labels (flipped)."""
    from clipadapt.synthetic.pedestrians import write_par_dataset

    base = tmp_path_factory.mktemp("tuned")
    root = write_par_dataset(base / "data", n_train=240, n_test=90, seed=0, image_size=48)
    flipped = base / "flipped"
    shutil.copytree(root, flipped)
    table = pd.read_csv(flipped / "test.csv")
    names = [c for c in table.columns if c != "img_path"]
    table[names] = 1 - table[names]
    table.to_csv(flipped / "test.csv", index=False)
    runs = []
    for name, data in (("run", root), ("flipped-run", flipped)):
        folder = base / f"{name}-files"
        folder.mkdir()
        result = cli("train", par_config(folder, data), "--out", base / name, "--quiet")
        assert result.exit_code == 0, result.output
        runs.append(base / name)
    return runs


def test_thresholds_are_chosen_on_validation_only(tuned_runs):
    run, flipped = (json.loads((r / "card.json").read_text()) for r in tuned_runs)
    assert run["thresholds"]["setting"] == "f1" and run["thresholds"]["split"] == "val"
    # the test labels differ completely, the thresholds and the calibration not at all
    assert run["thresholds"]["values"] == flipped["thresholds"]["values"]
    assert run["calibration"]["biases"] == flipped["calibration"]["biases"]
    scores = [json.loads((r / "metrics.json").read_text())["mean"]["mA"] for r in tuned_runs]
    assert scores[0] != scores[1]  # ... while the test scores saw them


def test_tuned_thresholds_raise_the_mean_attribute_f1_and_platt_lowers_the_ece(tuned_runs):
    run = tuned_runs[0]
    card = json.loads((run / "card.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    compared = metrics["thresholds"]
    print(f"test: fixed {compared['fixed']} / tuned {compared['tuned']}; ECE {metrics['calibration']['mean']}")
    assert compared["tuned"]["mean_attribute_f1"] > compared["fixed"]["mean_attribute_f1"] + 0.05
    assert set(card["thresholds"]["values"]) == set(card["task"]["attributes"][i]["name"] for i in range(12))
    assert all(0 < t < 1 for t in card["thresholds"]["values"].values())
    assert card["calibration"]["method"] == "platt" and any(b != 0 for b in card["calibration"]["biases"].values())
    assert metrics["calibration"]["mean"]["ece_after"] < metrics["calibration"]["mean"]["ece_before"]
    stored = load_file(str(run / "checkpoint.safetensors"))["decision_threshold"].tolist()
    assert stored == pytest.approx(list(card["thresholds"]["values"].values()), abs=1e-12)
    report = (run / "report.html").read_text()
    assert 'id="thresholds"' in report and "train.thresholds=f1" in report and "<th scope=\"col\">bias</th>" in report
    # the page links the sections it has, and only those (no retrieval was scored)
    assert '<a href="#thresholds">' in report and '<a href="#retrieval">' not in report


def test_predict_decides_each_attribute_at_its_threshold_and_onnx_decides_the_same(tuned_runs, tmp_path):
    pytest.importorskip("onnxruntime")
    run = tuned_runs[0]
    card = json.loads((run / "card.json").read_text())
    images = sorted(pd.read_csv(run / "predictions.csv")["path"])[:40]
    model = tmp_path / "model.onnx"
    assert cli("export", run, "--out", model).exit_code == 0
    meta = json.loads(__import__("onnx").load(str(model)).metadata_props[0].value)
    assert meta["thresholds"] == pytest.approx(list(card["thresholds"]["values"].values()))
    tables = {}
    for flag, source, out in (("--checkpoint", run, "torch.csv"), ("--model", model, "onnx.csv")):
        result = cli("predict", *images, flag, source, "--out", tmp_path / out, "--quiet")
        assert result.exit_code == 0, result.output
        tables[flag] = pd.read_csv(tmp_path / out)
    torch_table, onnx_table = tables["--checkpoint"], tables["--model"]
    decided = 0
    for name, threshold in card["thresholds"]["values"].items():
        assert (torch_table[name] == (torch_table[f"{name}:p"] > threshold)).all(), name
        assert (torch_table[name] == onnx_table[name]).all(), name
        assert np.abs(torch_table[f"{name}:p"] - onnx_table[f"{name}:p"]).max() < 1e-5
        decided += int(((torch_table[f"{name}:p"] > threshold) != (torch_table[f"{name}:p"] > 0.5)).sum())
    assert decided > 0  # the per-attribute thresholds changed some decisions against one 0.5


def test_serve_and_the_python_api_use_the_runs_thresholds(tuned_runs):
    import clipadapt
    from clipadapt.serve.model import ServedModel

    run = tuned_runs[0]
    values = json.loads((run / "card.json").read_text())["thresholds"]["values"]
    assert clipadapt.load(run).thresholds == pytest.approx(values)
    info = ServedModel(run).info()
    assert info["thresholds"] == pytest.approx(values) and info["threshold"] is None


def test_eval_reports_fixed_and_tuned_scores_as_training_did(tuned_runs, tmp_path):
    run = tuned_runs[0]
    result = cli("eval", run, "--out", tmp_path / "eval", "--quiet")
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())["thresholds"]
    trained = json.loads((run / "metrics.json").read_text())["thresholds"]
    for key in ("fixed", "tuned"):
        for name, value in trained[key].items():
            assert again[key][name] == pytest.approx(value, abs=1e-6), (key, name)


def test_single_label_tasks_refuse_tuned_thresholds_and_platt_before_training(tmp_path):
    from clipadapt.synthetic.streets import write_gss_dataset

    root = write_gss_dataset(tmp_path / "gss", n_train=40, n_test=20, seed=1, image_size=32)
    cfg = {"backbone": {"name": "clipadapt-tiny", "pretrained": "embedded"},
           "data": {"format": "gss", "root": str(root), "attributes": ["weather"]},
           "method": {"name": "linear_probe"}, "features": {"dir": str(tmp_path / "cache")}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    for setting, shown in (("train.thresholds=f1", "train.thresholds=f1"), ("train.calibrate=platt", "train.calibrate=platt")):
        result = cli("train", path, "--out", tmp_path / "run", "--quiet", "--set", setting)
        assert result.exit_code != 0 and shown in result.output and "single-label" in result.output
        assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
