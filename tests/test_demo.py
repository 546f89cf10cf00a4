"""`clipadapt demo` on a smaller rendering: every method runs, the tables and run folders
are written, and CLIP-MHAdapter learns (ahead of the majority class)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from clipadapt.cli import demo
from clipadapt.cli.main import app


def test_demo_trains_every_method_and_writes_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_DATA", {"n_train": 320, "n_test": 160, "seed": 3, "image_size": 64})
    monkeypatch.setattr(demo, "DEMO_EPOCHS", 12)
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
    for name in demo.DEMO_METHODS:
        run = tmp_path / "runs" / name
        for part in ("card.json", "metrics.json", "checkpoint.safetensors", "config.yaml", "predictions.csv",
                     "confusion_weather.csv"):
            assert (run / part).is_file(), f"{name}/{part}"
    assert (tmp_path / "runs" / "mhadapter" / "report.html").is_file()
