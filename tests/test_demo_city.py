"""The demo city (synthetic/city.py, `clipadapt demo --task city`): the planted pattern
and its per-cell truth, recomputed here from the written manifest with h3 and pandas
alone, and a miniature city mapped end to end, its correlations recomputed from the
written tables."""

from __future__ import annotations

import json

import h3
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clipadapt.cli import demo_city
from clipadapt.cli.main import app
from clipadapt.synthetic.city import (PLANTED, CityPlan, city_cells, draw_labels, planted_probabilities, river_km,
                                      to_latlon, write_city)
from clipadapt.synthetic.streets import ATTRIBUTES, PRIORS

TINY = CityPlan(size_km=1.5, per_cell=4, n_train=8, image_size=32, seed=2)


def _manifest(root):
    return pd.read_csv(root / "city.csv", dtype=str, keep_default_na=False)


def _truth_from_manifest(manifest: pd.DataFrame, resolution: int) -> pd.DataFrame:
    """Per cell and planted class: n, mean planted probability, realised share (the test's own code)."""
    cells = [h3.latlng_to_cell(float(a), float(b), resolution) for a, b in zip(manifest["lat"], manifest["lon"])]
    rows = []
    for attribute, class_name in PLANTED.items():
        frame = pd.DataFrame({"h3": cells, "p": manifest[f"planted:{attribute}:{class_name}"].astype(float),
                              "hit": (manifest[attribute] == class_name).astype(float)})
        for cell, group in frame.groupby("h3"):
            rows.append({"h3": cell, "attribute": attribute, "class": class_name, "n": len(group),
                         "planted": group["p"].mean(), "realised": group["hit"].mean()})
    return pd.DataFrame(rows)


def test_the_written_truth_is_the_manifests(tmp_path):
    root = write_city(tmp_path / "city", TINY)
    manifest = _manifest(root)
    cells = city_cells(TINY)
    assert len(manifest) == TINY.per_cell * len(cells) and manifest["uuid"].is_unique
    mine = _truth_from_manifest(manifest, TINY.resolution)
    # every held-out image is in one of the city's cells, and every cell has per_cell of them
    assert sorted(mine["h3"].unique()) == cells and (mine["n"] == TINY.per_cell).all()
    written = pd.read_csv(root / "truth.csv", dtype={"h3": str})
    both = mine.merge(written, on=["h3", "attribute", "class"], suffixes=("", "_written"), validate="one_to_one")
    assert len(both) == len(mine)
    for column in ("n", "planted", "realised"):
        np.testing.assert_allclose(both[column], both[f"{column}_written"], atol=1e-6)
    # each planted attribute's probabilities sum to 1 and stay within the plan's contrast
    for attribute, class_name in PLANTED.items():
        probs = manifest[[f"planted:{attribute}:{c}" for c in PRIORS[attribute]]].astype(float)
        np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
        assert probs[f"planted:{attribute}:{class_name}"].between(TINY.low - 1e-6, TINY.high + 1e-6).all()
    # the labelled part is in the Global StreetScapes layout: eight CSVs over the same images
    for attribute in ATTRIBUTES:
        table = pd.read_csv(root / "train" / f"{attribute}.csv", dtype=str, keep_default_na=False)
        assert list(table.columns) == ["uuid", "source", "lat", "lon", "img_path", attribute]
        assert len(table) == TINY.n_train and all((root / p).is_file() for p in table["img_path"])
    # same plan: the folder is kept, not rendered again
    stamp = (root / "done").stat().st_mtime_ns
    assert write_city(root, TINY) == root and (root / "done").stat().st_mtime_ns == stamp


def test_the_pattern_is_where_the_plan_puts_it():
    plan = CityPlan()
    # on each feature the planted class reaches `high`; far from all of them it is `low`
    rx, ry = river_km(np.array([0.3]))
    on = {"weather": (rx, ry), "glare": (np.array([-2.5]), np.array([-1.6])),
          "lighting_condition": (np.array([1.5]), np.array([1.4]))}
    far_lat, far_lon = to_latlon(plan, np.array([-2.9]), np.array([-2.9]))
    for attribute, (x, y) in on.items():
        k = list(PRIORS[attribute]).index(PLANTED[attribute])
        lat, lon = to_latlon(plan, x, y)
        assert planted_probabilities(plan, lat, lon)[attribute][0, k] == pytest.approx(plan.high, abs=0.02)
        assert planted_probabilities(plan, far_lat, far_lon)[attribute][0, k] == pytest.approx(plan.low, abs=0.01)
    # attributes without a feature keep the renderer's priors
    flat = planted_probabilities(plan, far_lat, far_lon)["platform"][0]
    assert flat == pytest.approx(list(PRIORS["platform"].values()))


def test_labels_are_drawn_with_the_planted_probabilities():
    plan = CityPlan()
    rng = np.random.default_rng(0)
    lat, lon = to_latlon(plan, rng.uniform(-3, 3, 20_000), rng.uniform(-3, 3, 20_000))
    probs = planted_probabilities(plan, lat, lon)
    labels = draw_labels(probs, rng)
    for attribute in PLANTED:
        for k, class_name in enumerate(PRIORS[attribute]):
            drawn = np.mean([row[attribute] == class_name for row in labels])
            # 4 binomial standard errors
            assert drawn == pytest.approx(probs[attribute][:, k].mean(), abs=4 * 0.5 / np.sqrt(20_000))


def test_a_miniature_city_is_mapped_and_scored(tmp_path, monkeypatch):
    plan = CityPlan(size_km=2.0, per_cell=8, n_train=80, image_size=64)
    monkeypatch.setattr(demo_city, "CITY_PLAN", plan)
    monkeypatch.setattr(demo_city, "CITY_EPOCHS", 2)
    result = CliRunner().invoke(app, ["demo", "--task", "city", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "lighting_condition" in result.output and "r vs" in result.output
    summary = json.loads((tmp_path / "city_summary.json").read_text())
    page = (tmp_path / "city-map.html").read_text()
    cells = pd.read_parquet(tmp_path / "city-cells.parquet")
    predictions = pd.read_parquet(tmp_path / "city-predictions.parquet")
    manifest = _manifest(tmp_path / "city-data")
    # every held-out image is predicted once, in exactly one cell, with its uuid and place
    assert sorted(predictions["uuid"]) == sorted(manifest["uuid"])
    where = [h3.latlng_to_cell(a, b, plan.resolution) for a, b in zip(predictions["lat"], predictions["lon"])]
    counts = pd.Series(where).value_counts()
    assert (counts == plan.per_cell).all() and summary["cells"] == len(counts) == len(city_cells(plan))
    for cell in counts.index:
        assert f'data-cell="{cell}"' in page
    # the aggregate: shares within [0, 1], each cell's expected shares of an attribute summing to 1
    assert cells["expected_share"].between(0, 1).all() and cells["top_share"].between(0, 1).all()
    np.testing.assert_allclose(cells.groupby(["h3", "attribute"])["expected_share"].sum(), 1, atol=1e-5)
    # the correlations, from the tables alone
    truth = _truth_from_manifest(manifest, plan.resolution)
    for attribute, class_name in PLANTED.items():
        mine = pd.DataFrame({"h3": where, "p": predictions[f"{attribute}:p({class_name})"],
                             "top": predictions[attribute] == class_name}).groupby("h3").mean()
        rows = truth[truth["attribute"] == attribute].set_index("h3").join(mine)
        entry = summary["correlations"][attribute]
        for estimator, column in (("expected", "p"), ("top", "top"), ("perfect", "realised")):
            for against in ("planted", "realised"):
                expected = np.corrcoef(rows[column].astype(float), rows[against])[0, 1]
                assert entry[estimator][against] == pytest.approx(expected, abs=1e-6), (attribute, estimator)
        assert entry["perfect"]["realised"] == pytest.approx(1.0)
        gap = rows["p"] - rows["realised"]
        errors = entry["error_vs_realised"]["expected"]
        assert errors == pytest.approx({"mean_abs": gap.abs().mean(), "mean": gap.mean()})
        # what the aggregate wrote for the cells is the predictions' own mean
        written = cells[(cells["attribute"] == attribute) & (cells["class"] == class_name)].set_index("h3")
        np.testing.assert_allclose(written.loc[mine.index, "expected_share"], mine["p"], atol=1e-6)
    # night is the plainest cue: even two epochs on 80 images map it the right way round
    assert summary["correlations"]["lighting_condition"]["expected"]["realised"] > 0


def test_seeds_and_unknown_tasks_name_the_city(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--task", "city", "--seeds", "1", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2 and "city" in result.output, result.output
    result = CliRunner().invoke(app, ["demo", "--task", "town", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2 and "'city'" in result.output, result.output
    assert not any(tmp_path.iterdir())
