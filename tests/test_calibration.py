"""Calibration: ECE and reliability bins against hand computations and a brute-force loop,
temperature fitting on synthetic logits, temperatures inside the method and its
checkpoint, and a calibrated run end to end (card, metrics, export parity)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from clipadapt.engine.calibrate import fit_temperature, scaled_nll
from clipadapt.engine.checkpoint import build_card, load_run, load_state_strict, write_checkpoint
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import build_method
from clipadapt.metrics.calibration import (
    add_calibration, attribute_calibration, expected_calibration_error, negative_log_likelihood, reliability_bins,
    softmax,
)
from clipadapt.metrics.classification import attribute_metrics

RUNNER = CliRunner()


# ------------------------------------------------------------------ ECE
def test_ece_of_a_hand_computed_single_label_example():
    probs = np.array([[0.9, 0.1], [0.38, 0.62], [0.08, 0.92], [0.3, 0.7], [0.5, 0.5]])
    labels = np.array([0, 0, 1, 0, -1])  # the last row is not labelled: left out
    # confidences 0.9 (right), 0.62 (wrong), 0.92 (right), 0.7 (wrong); 0.9 and 0.92 share
    # the bin (13/15, 14/15]: mean confidence 0.91, accuracy 1.
    # ECE = (2 * 0.09 + 0.62 + 0.7) / 4 = 0.375
    assert expected_calibration_error(probs, labels) == pytest.approx(0.375)
    table = reliability_bins(np.array([0.9, 0.62, 0.92, 0.7]), np.array([1.0, 0.0, 1.0, 0.0]))
    assert len(table["count"]) == 15 and sum(table["count"]) == 4
    assert table["count"][13] == 2 and table["confidence"][13] == pytest.approx(0.91) and table["accuracy"][13] == 1.0
    assert table["count"][9] == 1 and table["accuracy"][9] == 0.0 and table["confidence"][0] is None


def test_ece_of_a_hand_computed_binary_example():
    """Multi-label: bins of p(present), |frequency of present - mean p| per bin."""
    probs_present = np.array([0.1, 0.12, 0.78, 0.85])
    probs = np.stack([1 - probs_present, probs_present], axis=1)
    labels = np.array([0, 1, 1, 1])
    # bin (1/15, 2/15]: mean p 0.11, frequency 0.5; 0.78 and 0.85 alone in theirs
    expected = (2 * abs(0.5 - 0.11) + abs(1 - 0.78) + abs(1 - 0.85)) / 4
    assert expected_calibration_error(probs, labels, binary=True) == pytest.approx(expected)
    table = attribute_calibration(probs, labels, binary=True)["reliability"]
    assert table["count"][1] == 2 and table["confidence"][1] == pytest.approx(0.11) and table["accuracy"][1] == 0.5


def brute_force_ece(confidence, outcome, bins=15):
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        rows = [i for i, c in enumerate(confidence) if (lo < c <= hi) or (b == 0 and c == 0)]
        if rows:
            acc = sum(outcome[i] for i in rows) / len(rows)
            conf = sum(confidence[i] for i in rows) / len(rows)
            total += len(rows) / len(confidence) * abs(acc - conf)
    return total


def test_ece_equals_a_brute_force_loop():
    rng = np.random.default_rng(0)
    for k in (2, 3, 7):
        probs = softmax(rng.normal(size=(500, k)) * 3)
        labels = rng.integers(0, k, 500)
        conf, right = probs.max(1), (probs.argmax(1) == labels).astype(float)
        assert expected_calibration_error(probs, labels) == pytest.approx(brute_force_ece(conf, right), abs=1e-12)
    binary = softmax(rng.normal(size=(400, 2)) * 2)
    labels = rng.integers(0, 2, 400)
    assert expected_calibration_error(binary, labels, binary=True) == pytest.approx(
        brute_force_ece(binary[:, 1], labels.astype(float)), abs=1e-12)


def test_calibrated_probabilities_give_ece_near_zero_and_overconfident_ones_a_large_one():
    rng = np.random.default_rng(1)
    q = rng.uniform(0, 1, 200_000)
    present = (rng.uniform(0, 1, q.size) < q).astype(int)  # the probability is the truth
    honest = np.stack([1 - q, q], 1)
    assert expected_calibration_error(honest, present, binary=True) < 0.01
    sharpened = 1 / (1 + np.exp(-4 * np.log(q / (1 - q))))  # the same scores, overconfident
    over = np.stack([1 - sharpened, sharpened], 1)
    assert expected_calibration_error(over, present, binary=True) > 0.1
    # single-label: the top class drawn from the model's own distribution is calibrated
    logits = rng.normal(size=(100_000, 4)) * 2
    p = softmax(logits)
    drawn = (rng.uniform(size=(p.shape[0], 1)) > p.cumsum(1)).sum(1)
    assert expected_calibration_error(p, drawn) < 0.01
    assert expected_calibration_error(softmax(logits * 3), drawn) > 0.1


def test_nll_and_unlabelled_attribute():
    probs = np.array([[0.5, 0.5], [0.9, 0.1]])
    assert negative_log_likelihood(probs, np.array([1, 0])) == pytest.approx(-(np.log(0.5) + np.log(0.9)) / 2)
    entry = attribute_calibration(probs, np.array([-1, -1]))
    assert entry["ece"] is None and entry["nll"] is None and sum(entry["reliability"]["count"]) == 0


# ------------------------------------------------------------------ temperature fitting
def synthetic_logits(temperature: float, n: int = 20_000, k: int = 5, seed: int = 0):
    """Labels drawn from softmax(z); the model reports z * temperature (overconfident by T)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 1.5
    p = softmax(z)
    labels = (rng.uniform(size=(n, 1)) > p.cumsum(1)).sum(1)
    return z * temperature, labels


@pytest.mark.parametrize("true_t", [2.5, 0.5])
def test_the_fit_recovers_a_known_temperature_and_lowers_the_nll(true_t):
    logits, labels = synthetic_logits(true_t)
    fit = fit_temperature(logits, labels)
    assert fit.temperature == pytest.approx(true_t, rel=0.05)
    assert fit.nll_after < fit.nll_before
    assert fit.nll_after == pytest.approx(scaled_nll(logits, labels, fit.temperature))
    assert not fit.at_bound and fit.rows == len(labels)
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits / fit.temperature), labels)
    assert after < before / 2


def test_the_fit_skips_unlabelled_rows_and_keeps_one_without_labels():
    logits, labels = synthetic_logits(2.5, n=4000)
    masked = labels.copy()
    masked[::2] = -1
    assert fit_temperature(logits, masked).rows == 2000
    nothing = fit_temperature(logits, np.full(len(labels), -1))
    assert nothing.temperature == 1.0 and nothing.rows == 0
    constant = fit_temperature(np.zeros((50, 3)), np.arange(50) % 3)  # the NLL does not depend on T
    assert constant.temperature == 1.0


# ------------------------------------------------------------------ temperatures in the method
def features(backbone, n: int):
    from clipadapt.backbone import ImageFeatures

    torch.manual_seed(0)
    return ImageFeatures(torch.randn(n, backbone.num_patches, backbone.width), torch.randn(n, backbone.embed_dim))


def test_the_method_divides_its_logits_by_the_temperature_on_every_path(micro_backbone, two_attribute_task):
    method = build_method("linear_probe", micro_backbone, two_attribute_task).eval()
    feats = features(micro_backbone, 3)
    images = torch.randn(2, 3, micro_backbone.image_size, micro_backbone.image_size)
    with torch.no_grad():
        raw, raw_images = method(feats), method.forward_images(images)
        method.set_temperatures([2.0, 0.5])
        scaled, scaled_images = method(feats), method.forward_images(images)  # base forward_images runs self(...): once
    for a, t in enumerate([2.0, 0.5]):
        assert torch.allclose(scaled[a], raw[a] / t) and torch.allclose(scaled_images[a], raw_images[a] / t)
    assert [int(x) for x in scaled[0].argmax(1)] == [int(x) for x in raw[0].argmax(1)]
    with pytest.raises(ClipAdaptError, match="finite positive"):
        method.set_temperatures([1.0, -1.0])


def test_an_overridden_forward_images_is_divided_once(micro_backbone, two_attribute_task):
    from clipadapt.methods.linear_probe import LinearProbe

    class ThroughSelf(LinearProbe):  # a subclass whose forward_images calls self(...) itself
        def forward_images(self, images):
            return self(self.backbone.forward_features(images, self.needs().tap_block))

    method = ThroughSelf(micro_backbone, two_attribute_task, LinearProbe.Params()).eval()
    images = torch.randn(2, 3, micro_backbone.image_size, micro_backbone.image_size)
    with torch.no_grad():
        raw = method.forward_images(images)
        method.set_temperatures([4.0, 4.0])
        assert torch.allclose(method.forward_images(images)[0], raw[0] / 4.0)


def test_checkpoints_hold_the_temperature_only_when_calibrated_and_old_ones_load(tmp_path, micro_backbone, weather_task):
    method = build_method("mhadapter", micro_backbone, weather_task)
    assert "temperature" not in method.trained_state()  # uncalibrated: the checkpoint is what it always was
    old = tmp_path / "old"
    write_checkpoint(old, method, build_card(method, seed=0))
    assert "temperature" not in load_file(str(old / "checkpoint.safetensors"))
    loaded, _ = load_run(old, backbone=micro_backbone)  # strict loader, no temperature key: T = 1
    assert loaded.temperatures() == [1.0]

    method.set_temperatures([1.7])
    new = tmp_path / "new"
    write_checkpoint(new, method, build_card(method, seed=0))
    assert load_file(str(new / "checkpoint.safetensors"))["temperature"].tolist() == pytest.approx([1.7])
    loaded, _ = load_run(new, backbone=micro_backbone)
    assert loaded.temperatures() == pytest.approx([1.7])
    # loading an uncalibrated state into a calibrated method resets it; a foreign key is still an error
    load_state_strict(loaded, {k: v for k, v in loaded.trained_state().items() if k != "temperature"}, source="x")
    assert loaded.temperatures() == [1.0]
    with pytest.raises(ClipAdaptError, match="shape of temperature"):
        load_state_strict(loaded, {**loaded.trained_state(), "temperature": torch.ones(3)}, source="x")
    with pytest.raises(ClipAdaptError, match="unexpected"):
        load_state_strict(loaded, {**loaded.trained_state(), "extra": torch.ones(1)}, source="x")


def test_evaluation_metrics_carry_ece_nll_and_before_after(two_attribute_task):
    rng = np.random.default_rng(0)
    n = 300
    logits = [rng.normal(size=(n, a.num_classes)) * 3 for a in two_attribute_task.attributes]
    labels = np.stack([rng.integers(0, a.num_classes, n) for a in two_attribute_task.attributes], 1)
    labels[:10, 1] = -1
    preds = np.stack([z.argmax(1) for z in logits], 1)
    plain = add_calibration(attribute_metrics(labels, preds, two_attribute_task), labels, logits, two_attribute_task)
    assert "calibration" not in plain and plain["mean"]["ece"] > 0 and plain["mean"]["nll"] > 0
    first = two_attribute_task.names[0]
    assert plain["attributes"][first]["ece"] == pytest.approx(expected_calibration_error(softmax(logits[0]), labels[:, 0]))
    assert len(plain["attributes"][first]["reliability"]["count"]) == 15
    temps = [3.0, 2.0]
    calibrated = add_calibration(attribute_metrics(labels, preds, two_attribute_task), labels,
                                 [z / t for z, t in zip(logits, temps)], two_attribute_task, temps)
    row = calibrated["calibration"]["attributes"][first]
    assert row["ece_before"] == pytest.approx(plain["attributes"][first]["ece"])
    assert row["nll_before"] == pytest.approx(plain["attributes"][first]["nll"])
    assert row["ece_after"] == calibrated["attributes"][first]["ece"] and row["temperature"] == 3.0
    assert calibrated["mean"]["nll"] < plain["mean"]["nll"]  # random labels: flatter is better
    json.dumps(calibrated)  # plain numbers only


# ------------------------------------------------------------------ a calibrated run, end to end
def cli(*args):
    from clipadapt.cli.main import app

    return RUNNER.invoke(app, [str(a) for a in args])


def write_config(folder: Path, root: Path, cache: Path, **train) -> Path:
    import yaml

    cfg = {
        "backbone": {"name": "clipadapt-tiny", "pretrained": "embedded"},
        "data": {"format": "gss", "root": str(root), "attributes": ["weather", "glare"]},
        "method": {"name": "linear_probe"},
        "train": {"lr": 5e-2, "weight_decay": 0.0, "epochs": 8, "batch_size": 64, "warmup_epochs": 1,
                  "patience": None, "calibrate": "temperature", **train},
        "features": {"dir": str(cache)},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def gss_root(tmp_path_factory) -> Path:
    from clipadapt.synthetic.streets import write_gss_dataset

    root = tmp_path_factory.mktemp("gss")
    write_gss_dataset(root, n_train=240, n_test=120, seed=3, image_size=64)
    return root


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory, gss_root):
    """A linear probe trained with train.calibrate=temperature; records every call of
    Runner.predict_logits (which images, what for)."""
    from clipadapt.engine.trainer import Runner

    folder = tmp_path_factory.mktemp("calibrated")
    calls = []
    original = Runner.predict_logits

    def recording(self, images, description="predict", show=True):
        calls.append((description, [str(p) for p in images.paths]))
        return original(self, images, description, show)

    patch = pytest.MonkeyPatch()
    patch.setattr(Runner, "predict_logits", recording)
    try:
        result = cli("train", write_config(folder, gss_root, folder / "cache"), "--out", folder / "run", "--quiet")
    finally:
        patch.undo()
    assert result.exit_code == 0, result.output
    return folder / "run", calls


def test_a_calibrated_run_stores_its_temperatures_in_card_and_checkpoint(calibrated_run):
    run, _ = calibrated_run
    card = json.loads((run / "card.json").read_text())
    cal = card["calibration"]
    assert cal["method"] == "temperature" and cal["split"] == "val" and set(cal["temperatures"]) == {"weather", "glare"}
    assert all(t > 0 for t in cal["temperatures"].values()) and any(t != 1.0 for t in cal["temperatures"].values())
    assert cal["val"]["nll_after"] <= cal["val"]["nll_before"] + 1e-9
    stored = load_file(str(run / "checkpoint.safetensors"))["temperature"].tolist()
    assert stored == pytest.approx([cal["temperatures"]["weather"], cal["temperatures"]["glare"]], rel=1e-6)
    method, _ = load_run(run)
    assert method.temperatures() == pytest.approx(stored)


def test_test_metrics_show_ece_before_and_after(calibrated_run):
    run, _ = calibrated_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["mean"]["ece"] <= 1 and metrics["mean"]["nll"] > 0
    assert len(metrics["attributes"]["weather"]["reliability"]["count"]) == 15
    assert set(metrics["calibration"]["mean"]) == {"ece_before", "ece_after", "nll_before", "nll_after"}
    assert metrics["calibration"]["mean"]["ece_after"] == pytest.approx(metrics["mean"]["ece"])
    report = (run / "report.html").read_text()
    assert 'id="calibration"' in report and "Reliability diagram of weather" in report


def test_eval_of_a_calibrated_run_reports_the_same_before_and_after(calibrated_run, tmp_path):
    run, _ = calibrated_run
    result = cli("eval", run, "--out", tmp_path / "eval", "--quiet")
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())["calibration"]
    trained = json.loads((run / "metrics.json").read_text())["calibration"]
    assert again["temperatures"] == trained["temperatures"]
    for key, value in trained["mean"].items():
        assert again["mean"][key] == pytest.approx(value, abs=1e-6), key


def test_the_temperatures_are_fitted_on_validation_never_on_test(calibrated_run):
    run, calls = calibrated_run
    card = json.loads((run / "card.json").read_text())
    fitted = [paths for what, paths in calls if what == "calibrate"]
    assert len(fitted) == 1 and len(fitted[0]) == card["data"]["val"]
    test_paths = set(pd.read_csv(run / "predictions.csv")["path"])
    assert len(test_paths) == card["data"]["test"] and not test_paths & set(fitted[0])
    order = [what for what, _ in calls]
    assert order.index("calibrate") < order.index("test")  # after selection, before the test evaluation


def test_no_validation_split_is_refused_before_training(tmp_path, gss_root):
    result = cli("train", write_config(tmp_path, gss_root, tmp_path / "cache"), "--out", tmp_path / "run", "--quiet",
                 "--set", "data.val_fraction=0")
    assert result.exit_code != 0
    assert "train.calibrate=temperature" in result.output and "validation" in result.output
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_the_onnx_export_carries_the_temperature(calibrated_run, tmp_path):
    pytest.importorskip("onnxruntime")
    run, _ = calibrated_run
    card = json.loads((run / "card.json").read_text())
    images = sorted(pd.read_csv(run / "predictions.csv")["path"])[:12]
    model = tmp_path / "model.onnx"
    assert cli("export", run, "--out", model).exit_code == 0
    assert json.loads(__import__("onnx").load(str(model)).metadata_props[0].value)["calibration"]["temperatures"] \
        == card["calibration"]["temperatures"]
    for flag, source, out in (("--checkpoint", run, "torch.csv"), ("--model", model, "onnx.csv")):
        result = cli("predict", *images, flag, source, "--out", tmp_path / out, "--quiet")
        assert result.exit_code == 0, result.output
    torch_table, onnx_table = pd.read_csv(tmp_path / "torch.csv"), pd.read_csv(tmp_path / "onnx.csv")
    columns = [c for c in torch_table.columns if ":p" in c]
    diff = np.abs(torch_table[columns].to_numpy(float) - onnx_table[columns].to_numpy(float)).max()
    print(f"calibrated export parity: max abs probability difference {diff:.2e}")
    assert diff < 1e-4
    # and those are the calibrated probabilities, not the raw ones
    method, _ = load_run(run)
    method.set_temperatures([1.0, 1.0])
    from clipadapt.predict.local import predict_images

    raw = predict_images(method, [Path(p) for p in images], torch.device("cpu"), batch_size=4, progress=False)
    assert np.abs(raw[columns].to_numpy(float) - onnx_table[columns].to_numpy(float)).max() > 1e-3
