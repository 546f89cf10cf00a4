"""End to end through the CLI on a rendered Global-StreetScapes-layout folder, with the
embedded tiny CLIP: train, eval, predict, and the errors a user meets on bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from clipadapt.cli.main import app

RUNNER = CliRunner()
FAST = ["--set", "train.epochs=12", "--set", "train.batch_size=64", "--set", "train.warmup_epochs=1",
        "--set", "train.patience=null", "--quiet"]


def cli(*args: str):
    result = RUNNER.invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def gss_root(tmp_path_factory) -> Path:
    from clipadapt.synthetic.streets import write_gss_dataset

    root = tmp_path_factory.mktemp("gss")
    write_gss_dataset(root, n_train=320, n_test=160, seed=3, image_size=64)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def write_config(folder: Path, root: Path, cache: Path, method: str = "mhadapter", attributes=("weather",), **params) -> Path:
    import yaml

    cfg = {
        "backbone": {"name": "clipadapt-tiny", "pretrained": "embedded"},
        "data": {"format": "gss", "root": str(root), "attributes": list(attributes)},
        "method": {"name": method, "params": params},
        "train": {"lr": 1e-3},
        "features": {"dir": str(cache)},
    }
    path = folder / f"{method}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(gss_root, cache_dir, tmp_path_factory):
    """An MHAdapter run and a majority-class run on the same folder."""
    work = tmp_path_factory.mktemp("runs")
    runs = {}
    for method, params in (("mhadapter", {"beta": 0.8}), ("majority", {})):
        config = write_config(work, gss_root, cache_dir, method, **params)
        result = cli("train", config, "--out", work / method, *FAST)
        assert result.exit_code == 0, result.output
        runs[method] = work / method
    return runs


def test_train_beats_majority_in_macro_f1(trained):
    mh = json.loads((trained["mhadapter"] / "metrics.json").read_text())["mean"]["macro_f1"]
    maj = json.loads((trained["majority"] / "metrics.json").read_text())["mean"]["macro_f1"]
    print(f"end-to-end weather macro-F1: mhadapter {mh:.3f}, majority {maj:.3f}")
    assert mh > maj + 0.1, (mh, maj)


def test_run_folder_holds_card_metrics_checkpoint_and_config(trained):
    run = trained["mhadapter"]
    for name in ("card.json", "metrics.json", "checkpoint.safetensors", "config.yaml", "history.json",
                 "predictions.csv", "confusion_weather.csv", "confusion_weather.png"):
        assert (run / name).is_file(), name
    card = json.loads((run / "card.json").read_text())
    assert card["method"] == "mhadapter"
    assert card["backbone"]["name"] == "clipadapt-tiny" and card["backbone"]["pretrained"] == "embedded"
    assert card["task"]["attributes"][0]["classes"] == ["clear", "cloudy", "foggy", "rainy", "snowy"]
    assert card["prompts"]["weather"][2] == "a photo in foggy weather."
    assert card["trainable_parameters"] > 0 and card["seed"] == 42
    assert {"clipadapt", "torch", "open_clip"} <= set(card["versions"])
    assert not (run / "resume.json").exists()


def test_eval_reproduces_the_test_metrics(trained):
    run = trained["mhadapter"]
    result = cli("eval", run, "--quiet")
    assert result.exit_code == 0, result.output
    assert (f"wrote 5 files to {run / 'eval'}: confusion_weather.csv, confusion_weather.png, metrics.json, "
            "predictions.csv, report.html") in " ".join(result.output.split())
    again = json.loads((run / "eval" / "metrics.json").read_text())
    first = json.loads((run / "metrics.json").read_text())
    assert again["mean"]["macro_f1"] == pytest.approx(first["mean"]["macro_f1"], abs=1e-6)


def test_predict_folder_to_csv_and_parquet(trained, gss_root, tmp_path):
    folder = gss_root / "img" / "1"
    n = len(list(folder.glob("*.jpeg")))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    shutil.copy(next(folder.glob("*.jpeg")), tmp_path / "good.jpeg")
    for suffix in ("csv", "parquet"):
        out = tmp_path / f"pred.{suffix}"
        result = cli("predict", folder, tmp_path / "broken.jpg", "--checkpoint", trained["mhadapter"], "--out", out, "--quiet")
        assert result.exit_code == 0, result.output
        table = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
        assert len(table) == n + 1
        good = table[table["ok"]]
        probs = good[[c for c in table.columns if c.startswith("weather:p(")]].to_numpy()
        assert probs.shape[1] == 5 and np.allclose(probs.sum(1), 1.0, atol=1e-4)
        assert set(good["weather"]) <= {"clear", "cloudy", "foggy", "rainy", "snowy"}
        bad = table[~table["ok"]]
        assert len(bad) == 1 and "broken.jpg" in bad["path"].iloc[0] and bad["error"].iloc[0]


def test_predict_int8_prints_its_agreement_and_stays_close_to_fp32(trained, gss_root, tmp_path):
    folder = gss_root / "img" / "1"
    tables = {}
    for precision in ("fp32", "int8"):
        out = tmp_path / f"{precision}.csv"
        result = cli("predict", folder, "--checkpoint", trained["mhadapter"], "--out", out, "--precision", precision,
                     "--decode", "full", "--quiet")
        assert result.exit_code == 0, result.output
        assert ("measured against fp32" in result.output) == (precision == "int8"), result.output
        tables[precision] = pd.read_csv(out)
    cols = [c for c in tables["fp32"].columns if c.startswith("weather:p(")]
    diff = np.abs(tables["fp32"][cols].to_numpy() - tables["int8"][cols].to_numpy())
    assert 0 < diff.max() < 0.1  # the lossy pass did run, and stayed close
    assert (tables["fp32"]["weather"] == tables["int8"]["weather"]).mean() >= 0.9


def test_predict_int8_with_device_auto_runs_on_the_cpu_of_a_gpu_machine(trained, gss_root, tmp_path, monkeypatch):
    # int8 is CPU-only; on a machine with a GPU, --device auto must pick the CPU for it
    # (before the fix it picked CUDA and stopped with "int8 runs on CPU only").
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    out = tmp_path / "int8.csv"
    result = cli("predict", gss_root / "img" / "1", "--checkpoint", trained["mhadapter"], "--out", out,
                 "--precision", "int8", "--quiet")
    assert result.exit_code == 0, result.output
    assert "measured against fp32" in result.output and pd.read_csv(out)["ok"].all()


def test_info_reports_the_paper_parameter_count():
    result = cli("info", "--method", "mhadapter", "--backbone", "ViT-B-16", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["trainable_parameters"] == 1_380_096
    assert report["tap"] == {"block": 11, "of_blocks": 12, "tokens_shape": [196, 768]}
    assert report["feature_store"]["bytes_per_image"] == 196 * 768 * 2 + 512 * 4


# ----------------------------------------------------------------- bad input is an answer
def copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_image_names_csv_and_row(gss_root, cache_dir, tmp_path):
    root = copy_root(gss_root, tmp_path / "gss")
    table = pd.read_csv(root / "train" / "weather.csv")
    (root / table["img_path"].iloc[4]).unlink()
    result = cli("train", write_config(tmp_path, root, cache_dir), "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 2
    assert "weather.csv" in result.output and table["img_path"].iloc[4].split("/")[-1] in result.output


def test_unreadable_image_names_the_file(gss_root, tmp_path):
    root = copy_root(gss_root, tmp_path / "gss")
    table = pd.read_csv(root / "test" / "weather.csv")
    (root / table["img_path"].iloc[2]).write_bytes(b"\x00garbage")
    result = cli("train", write_config(tmp_path, root, tmp_path / "cache"), "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 2
    assert table["img_path"].iloc[2].split("/")[-1] in result.output


def test_unknown_label_names_file_row_and_label(gss_root, cache_dir, tmp_path):
    root = copy_root(gss_root, tmp_path / "gss")
    table = pd.read_csv(root / "test" / "weather.csv")
    table.loc[7, "weather"] = "hailstorm"
    table.to_csv(root / "test" / "weather.csv", index=False)
    result = cli("train", write_config(tmp_path, root, cache_dir), "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 2
    assert "hailstorm" in result.output and "weather.csv" in result.output


def test_missing_column_names_it(gss_root, cache_dir, tmp_path):
    root = copy_root(gss_root, tmp_path / "gss")
    table = pd.read_csv(root / "train" / "weather.csv").rename(columns={"weather": "wether"})
    table.to_csv(root / "train" / "weather.csv", index=False)
    result = cli("train", write_config(tmp_path, root, cache_dir), "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 2
    assert "'weather'" in result.output and "weather.csv" in result.output


def test_checkpoint_for_other_classes_is_refused(trained, gss_root, cache_dir, tmp_path):
    config = write_config(tmp_path, gss_root, cache_dir, attributes=("glare",))
    result = cli("eval", trained["mhadapter"], "--config", config, "--quiet")
    assert result.exit_code == 2
    assert "weather" in result.output and "glare" in result.output


def test_checkpoint_for_another_backbone_is_refused(trained):
    from clipadapt.backbone import create_backbone
    from clipadapt.engine.checkpoint import load_run
    from clipadapt.errors import ClipAdaptError

    with pytest.raises(ClipAdaptError, match="trained on backbone clipadapt-tiny"):
        load_run(trained["mhadapter"], backbone=create_backbone("clipadapt-tiny", None))


def test_unknown_setting_is_refused_with_a_suggestion(gss_root, cache_dir, tmp_path):
    result = cli("train", write_config(tmp_path, gss_root, cache_dir), "--out", tmp_path / "run", "--set", "train.epoch=3")
    assert result.exit_code == 2 and "Did you mean 'epochs'" in result.output
    assert not (tmp_path / "run" / "card.json").exists()


def test_finished_run_is_not_overwritten(trained, gss_root, cache_dir, tmp_path):
    before = (trained["mhadapter"] / "checkpoint.safetensors").read_bytes()
    result = cli("train", write_config(tmp_path, gss_root, cache_dir), "--out", trained["mhadapter"], *FAST)
    assert result.exit_code == 2 and "already holds a finished run" in result.output
    assert (trained["mhadapter"] / "checkpoint.safetensors").read_bytes() == before
