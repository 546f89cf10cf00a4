"""The HTML report is written at the end of `train` and `eval`; a report that fails to
render only warns, and the run is kept whole."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from clipadapt.config import validate_config
from clipadapt.report.html import ReportWarning
from clipadapt.workflow import eval_run, train_run


@pytest.fixture(scope="module")
def gss_root(tmp_path_factory) -> Path:
    from clipadapt.synthetic.streets import write_gss_dataset

    return write_gss_dataset(tmp_path_factory.mktemp("gss"), n_train=40, n_test=20, seed=1, image_size=32)


def config(root: Path, cache: Path):
    return validate_config({
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "gss", "root": str(root), "attributes": ["weather"]},
        "method": {"name": "mhadapter"},
        "train": {"epochs": 2, "batch_size": 16, "warmup_epochs": 0, "patience": None},
        "features": {"dir": str(cache)},
    })


@pytest.fixture(scope="module")
def trained(gss_root, micro_backbone, tmp_path_factory):
    work = tmp_path_factory.mktemp("auto")
    cfg = config(gss_root, work / "cache")
    return train_run(cfg, work / "run", progress=False, backbone=micro_backbone), cfg


def metric_cells(metrics: dict) -> list[str]:
    """The accuracy and macro-F1 cells the report must show for these metrics."""
    m = metrics["attributes"]["weather"]
    return [f'<td class="num">{100 * m[k]:.2f}</td>' for k in ("accuracy", "macro_f1")]


def test_train_writes_the_report_into_the_run_folder(trained):
    outcome, _ = trained
    report = outcome.run_dir / "report.html"
    assert report.is_file()
    html = report.read_text()
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert all(cell in html for cell in metric_cells(metrics))
    assert 'id="gallery"' in html and "data:image/jpeg;base64," in html  # the gallery's thumbnails


def test_eval_writes_a_report_of_its_own_results(trained, tmp_path):
    outcome, cfg = trained
    out = tmp_path / "evaluation"
    metrics = eval_run(outcome.run_dir, cfg, out=out, progress=False)
    html = (out / "report.html").read_text()
    assert all(cell in html for cell in metric_cells(metrics))
    assert str(outcome.run_dir) in html  # the card still comes from the run folder


def test_a_failing_report_warns_and_loses_nothing(gss_root, micro_backbone, tmp_path, monkeypatch):
    import clipadapt.report.html as html_module

    def broken(*args, **kwargs):
        raise RuntimeError("figure exploded")

    monkeypatch.setattr(html_module, "gallery_section", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = train_run(config(gss_root, tmp_path / "cache"), tmp_path / "run", progress=False, backbone=micro_backbone)
    messages = [str(w.message) for w in caught if issubclass(w.category, ReportWarning)]
    assert len(messages) == 1 and "figure exploded" in messages[0] and "clipadapt report" in messages[0]
    assert not (outcome.run_dir / "report.html").exists()
    for name in ("card.json", "checkpoint.safetensors", "metrics.json", "predictions.csv", "history.json"):
        assert (outcome.run_dir / name).is_file(), name
    assert outcome.metrics is not None
