"""Attribute search on synthetic pedestrians: a linear probe on the tiny CLIP, scored by
`clipadapt eval --retrieval`, ranks single attributes and pairs well above their base
rate, and `clipadapt search` draws its top hits in a page Chromium shows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.search.query import parse_query, terms
from clipadapt.search.retrieval import average_precision, retrieval_metrics
from clipadapt.task import Attribute, TaskSpec

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A linear probe trained on 400 rendered crops (100 test); `clipadapt eval
    --retrieval default` into RUN/eval."""
    from clipadapt.config import validate_config
    from clipadapt.workflow import train_run

    root = tmp_path_factory.mktemp("search")
    cfg = validate_config({
        "backbone": {"name": "clipadapt-tiny", "pretrained": "embedded", "preprocess": "letterbox"},
        "data": {"format": "synthetic-par", "root": str(root / "data"), "val_fraction": 0.2,
                 "synthetic": {"n_train": 400, "n_test": 100, "seed": 0, "image_size": 64}},
        "method": {"name": "linear_probe", "params": {}},
        "train": {"batch_size": 64, "epochs": 20, "warmup_epochs": 1, "lr": 5e-2, "weight_decay": 0.0, "seed": 0,
                  "eval_batch_size": 256},
        "features": {"dir": str(root / "cache")}}, source="test")
    train_run(cfg, root / "run", progress=False)
    result = RUNNER.invoke(app, ["eval", str(root / "run"), "--retrieval", "default", "--quiet"])
    assert result.exit_code == 0, result.output
    return root / "run", result.output


def test_queries_rank_well_above_their_base_rate(run):
    folder, output = run
    retrieval = json.loads((folder / "eval" / "metrics.json").read_text())["retrieval"]
    assert "20 most frequent" in retrieval["queries_from"]
    singles, pairs = retrieval["by_terms"]["1"], retrieval["by_terms"]["2"]
    assert singles["queries"] == 12 and pairs["queries"] == 20
    # a random ranking scores AP about the base rate
    for group in (singles, pairs):
        assert group["map"] > 1.5 * group["base_rate"] and group["map"] > group["base_rate"] + 0.1, group
        assert group["p@10"] > group["base_rate"] + 0.05, group
    assert "retrieval (default:" in output and "mean of 32" in output
    assert 'id="retrieval"' in (folder / "eval" / "report.html").read_text()


def test_the_product_ranks_pairs_better_than_either_attribute_alone(run):
    folder, _ = run
    table = pd.read_csv(folder / "eval" / "predictions.csv")
    retrieval = json.loads((folder / "eval" / "metrics.json").read_text())["retrieval"]
    joint, alone = [], []
    for query in (q for q in retrieval["per_query"] if q["terms"] == 2):
        a, b = (t.name for t in terms(parse_query(query["query"])))
        relevant = ((table[f"{a}:true"] == 1) & (table[f"{b}:true"] == 1)).to_numpy()
        joint.append(average_precision(relevant, (table[f"{a}:p"] * table[f"{b}:p"]).to_numpy()))
        alone += [average_precision(relevant, table[f"{n}:p"].to_numpy()) for n in (a, b)]
        assert joint[-1] == pytest.approx(query["ap"], abs=1e-6)  # eval's AP is the table's
    assert np.mean(joint) > np.mean(alone) + 0.01, (np.mean(joint), np.mean(alone))


def test_a_query_file_is_scored_and_a_bad_one_fails_before_evaluating(run, tmp_path):
    folder, _ = run
    table = pd.read_csv(folder / "eval" / "predictions.csv")
    names = [c.removesuffix(":p") for c in table.columns if c.endswith(":p")]
    task = TaskSpec(tuple(Attribute(n, ("no", "yes")) for n in names), multilabel=True)
    labels = table[[f"{n}:true" for n in names]].to_numpy()
    probs = [np.stack([1 - table[f"{n}:p"], table[f"{n}:p"]], 1) for n in names]
    queries = tmp_path / "queries.txt"
    queries.write_text("# two of them\nfemale & !hat\n'Skirt&Dress' | Shorts\n", encoding="utf-8")
    scored = retrieval_metrics(str(queries), task, labels, probs)
    assert [q["query"] for q in scored["per_query"]] == ["Female & !Hat", "'Skirt&Dress' | Shorts"]
    relevant = int(((labels[:, names.index("Skirt&Dress")] == 1) | (labels[:, names.index("Shorts")] == 1)).sum())
    assert scored["per_query"][1]["relevant"] == relevant

    queries.write_text("Female & Backpak\n", encoding="utf-8")
    result = RUNNER.invoke(app, ["eval", str(folder), "--retrieval", str(queries), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "Did you mean 'Backpack'?" in result.output
    assert not (tmp_path / "e").exists()  # refused before the evaluation


def test_search_page_shows_the_top_hits_in_chromium(run, tmp_path):
    from clipadapt.report.browser import find_chromium, launch

    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    folder, _ = run
    result = RUNNER.invoke(app, ["search", str(folder / "eval" / "predictions.csv"), "--query",
                                 "female & 'skirt&dress' & !hat", "--out", str(tmp_path), "--top", "5"])
    assert result.exit_code == 0, result.output
    ranked = pd.read_csv(tmp_path / "search.csv")
    assert len(ranked) == 100 and ranked["score"].is_monotonic_decreasing
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`); the page was written but not looked at.")
    with playwright_api.sync_playwright() as p:
        browser = launch(p, chromium)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((tmp_path / "search.html").as_uri())
        assert page.locator("h1").inner_text() == "Female & 'Skirt&Dress' & !Hat"
        widths = page.eval_on_selector_all(".hit img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert widths == [160] * 5  # every top hit drawn as an image
        shown = page.locator(".hit .score").all_inner_texts()
        assert shown == [f"{100 * s:.2f}%" for s in ranked["score"][:5]]
        first = page.locator(".hit").first.inner_text()
        assert "P(Female)" in first and f"{100 * ranked['Hat:p'][0]:.2f}%" in first
        browser.close()
