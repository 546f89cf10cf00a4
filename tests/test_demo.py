"""`clipadapt demo` on a smaller rendering: every method runs, the tables and run folders
are written, and CLIP-MHAdapter learns (ahead of the majority class)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clipadapt.cli import demo
from clipadapt.cli.main import app


def test_demo_trains_every_method_and_writes_tables(tmp_path, monkeypatch):
    # a fifth of the demo's images, a quarter of its epochs: CLIP-MHAdapter still leads the
    # majority class by ~0.3 macro-F1 (0.59 vs 0.29), in about two thirds of the former
    # 320 / 160 x 12 epochs' time (the full demo is `make demo`'s and the benchmarks')
    monkeypatch.setattr(demo, "DEMO_DATA", {"n_train": 160, "n_test": 80, "seed": 3, "image_size": 64})
    monkeypatch.setattr(demo, "DEMO_EPOCHS", 8)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary) == list(demo.DEMO_METHODS)
    f1 = {name: entry["metrics"]["mean"]["macro_f1"] for name, entry in summary.items()}
    assert f1["mhadapter"] > f1["majority"] + 0.1
    assert summary["majority"]["trainable_parameters"] == 0
    assert summary["mhadapter"]["trainable_parameters"] > summary["linear_probe"]["trainable_parameters"] > 0
    table = (tmp_path / "summary.md").read_text()
    assert "| mhadapter |" in table and "| weather |" in table
    assert "mean macro-F1" in result.output and "lighting_condition" in result.output
    # every method is calibrated on validation: the table shows test ECE before -> after
    assert demo.ECE_TITLE in table
    for name, entry in summary.items():
        assert set(entry["calibration"]["temperatures"]) == set(entry["metrics"]["attributes"]), name
        assert 0 <= entry["metrics"]["mean"]["ece"] <= 1
    for name in demo.DEMO_METHODS:
        run = tmp_path / "runs" / name
        for part in ("card.json", "metrics.json", "checkpoint.safetensors", "config.yaml", "predictions.csv",
                     "confusion_weather.csv"):
            assert (run / part).is_file(), f"{name}/{part}"
    assert (tmp_path / "runs" / "mhadapter" / "report.html").is_file()


def test_par_demo_trains_promptpar_and_baselines(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "PAR_DATA", {"n_train": 160, "n_test": 80, "seed": 5, "image_size": 64})
    monkeypatch.setattr(demo, "PAR_EPOCHS", 3)
    # the image-path method and the baselines it is judged against (the others are tested above)
    monkeypatch.setattr(demo, "PAR_METHODS", {k: demo.PAR_METHODS[k] for k in ("majority", "zeroshot", "promptpar")})
    result = CliRunner().invoke(app, ["demo", "--task", "par", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary) == list(demo.PAR_METHODS)
    mean = {name: entry["metrics"]["mean"] for name, entry in summary.items()}
    assert mean["majority"]["mA"] == 0.5  # all-negative or all-positive per attribute: half of mA
    # (PromptPAR beating zero-shot needs the full demo's 600 crops and 20 epochs: README
    # table. This shrunk run must train and be scored.)
    history = json.loads((tmp_path / "runs" / "promptpar" / "history.json").read_text())
    assert len(history) >= 2 and all(row["train_loss"] > 0 for row in history)
    assert "mA" in result.output and "UpperStride" in result.output
    run = tmp_path / "runs" / "promptpar"
    for part in ("card.json", "metrics.json", "checkpoint.safetensors", "per_attribute.csv", "predictions.csv",
                 "report.html"):
        assert (run / part).is_file(), part
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"mA", "accuracy", "precision", "recall", "f1_mean_of_samples", "f1_of_means"} <= set(metrics["multilabel"])


def test_unsupervised_demo_self_trains_without_labels_and_compares(tmp_path, monkeypatch):
    from clipadapt.cli import demo_unsupervised as unsup

    monkeypatch.setattr(unsup, "UNSUPERVISED_DATA", {**unsup.UNSUPERVISED_DATA, "n_train_per_class": 8,
                                                      "n_test_per_class": 4, "seed": 1})
    monkeypatch.setattr(unsup, "UNSUPERVISED_TRAIN", {"epochs": 1, "batch_size": 32, "seed": 0})
    result = CliRunner().invoke(app, ["demo", "--task", "unsupervised", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary) == [label for label, _, _ in unsup.TABLE_ROWS]
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in summary.values())
    for name in unsup.UNSUPERVISED_RUNS:
        card = json.loads((tmp_path / "runs" / name / "card.json").read_text())
        assert card["data"]["train_labels_used"] is False
    # the upper bound is the one run that learns from the labels, and the table says so
    for name in unsup.UPPER_BOUND_RUNS:
        assert json.loads((tmp_path / "runs" / name / "card.json").read_text())["data"]["train_labels_used"] is True
    assert "TRUE labels (not label-free)" in list(summary)[-1]
    # the baseline is the ablation without SOAP; microCLIP keeps it
    cards = {n: json.loads((tmp_path / "runs" / n / "card.json").read_text()) for n in unsup.UNSUPERVISED_RUNS}
    assert cards["selftrain_cls"]["params"]["use_soap"] is False and cards["microclip"]["params"]["use_soap"] is True
    # every run, the upper bound too, trains with the demo's recipe, on the toned birds
    cards["microclip_true_labels"] = json.loads((tmp_path / "runs" / "microclip_true_labels" / "card.json").read_text())
    for name, card in cards.items():
        assert card["params"]["fairness_weight"] == 5.0 and card["params"]["randaugment"] is None, name
    assert json.loads((tmp_path / "data" / "synthetic.json").read_text())["species_tones"] is True
    assert "microCLIP (SOAP + TokenFusion)" in result.output and "| model | accuracy | macro-F1 |" in (
        tmp_path / "summary.md").read_text()


def test_unsupervised_demo_repeats_over_seeds_and_reports_the_mean(tmp_path, monkeypatch):
    from clipadapt.cli import demo_unsupervised as unsup

    monkeypatch.setattr(unsup, "UNSUPERVISED_DATA", {"n_train_per_class": 6, "n_test_per_class": 3, "seed": 1,
                                                      "image_size": 64})
    monkeypatch.setattr(unsup, "UNSUPERVISED_TRAIN", {"epochs": 1, "batch_size": 32, "seed": 0})
    monkeypatch.setattr(unsup, "UNSUPERVISED_RUNS", {"microclip": {}})
    monkeypatch.setattr(unsup, "UPPER_BOUND_RUNS", {})
    monkeypatch.setattr(unsup, "TABLE_ROWS", (("zero-shot", "microclip", "zeroshot_templates"),
                                               ("microCLIP", "microclip", "microclip")))
    result = CliRunner().invoke(app, ["demo", "--task", "unsupervised", "--seeds", "3,4", "--out", str(tmp_path),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    row = summary["microCLIP"]
    seeds = [row["per_seed"][s]["accuracy"] for s in ("3", "4")]
    assert row["accuracy"] == pytest.approx(sum(seeds) / 2)
    assert row["accuracy_std"] == pytest.approx(abs(seeds[0] - seeds[1]) / 2 ** 0.5)
    for seed in (3, 4):
        card = json.loads((tmp_path / "runs" / "microclip" / f"seed-{seed}" / "card.json").read_text())
        assert card["seed"] == seed
    # zero-shot does not depend on the self-training seed
    zs = summary["zero-shot"]["per_seed"]
    assert zs["3"] == zs["4"] and summary["zero-shot"]["accuracy_std"] == 0.0
    assert "over self-training seeds 3, 4" in (tmp_path / "summary.md").read_text()
    assert "±" in result.output


@pytest.mark.parametrize("args, message", [(["--task", "gss", "--seeds", "1"], "--seeds repeats"),
                                           (["--task", "unsupervised", "--seeds", "a,b"], "whole numbers")])
def test_demo_seeds_are_checked(tmp_path, args, message):
    result = CliRunner().invoke(app, ["demo", *args, "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "runs").exists()
