"""`clipadapt search` on hand-made prediction tables: ranking, unusable rows, relative
image paths, CSV and Parquet, the files it writes and its one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from clipadapt.cli.main import app

RUNNER = CliRunner()


@pytest.fixture
def table(tmp_path):
    """A `clipadapt predict` table of 5 crops (the images beside it, paths relative to
    its folder); row 3 is unusable (ok false, no probabilities)."""
    folder = tmp_path / "preds"
    (folder / "crops").mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (20, 40), (40 * i, 90, 200 - 30 * i)).save(folder / "crops" / f"p{i}.png")
    female = [0.9, 0.2, 0.6, np.nan, 0.7]
    skirt = [0.5, 0.9, 0.1, np.nan, 0.8]
    hat = [0.1, 0.0, 0.5, np.nan, 0.2]
    frame = pd.DataFrame({
        "path": [f"crops/p{i}.png" for i in range(5)], "ok": [True, True, True, False, True],
        "error": ["", "", "", "Unreadable image", ""],
        "Female": [1, 0, 1, -1, 1], "Female:p": female, "Hat": [0, 0, 0, -1, 0], "Hat:p": hat,
        "Skirt&Dress": [0, 1, 0, -1, 1], "Skirt&Dress:p": skirt})
    frame.to_csv(folder / "table.csv", index=False)
    frame.to_parquet(folder / "table.parquet", index=False)
    return folder


def test_rows_are_ranked_by_the_querys_probability(table, tmp_path):
    out = tmp_path / "hits"
    result = RUNNER.invoke(app, ["search", str(table / "table.csv"), "--query", "female & 'skirt&dress' & !hat",
                                 "--out", str(out), "--top", "2"])
    assert result.exit_code == 0, result.output
    ranked = pd.read_csv(out / "search.csv")
    # by hand: p0 .9*.5*.9 = .405, p1 .2*.9*1 = .18, p2 .6*.1*.5 = .03, p4 .7*.8*.8 = .448; p3 left out
    assert ranked["path"].tolist() == ["crops/p4.png", "crops/p0.png", "crops/p1.png", "crops/p2.png"]
    np.testing.assert_allclose(ranked["score"], [0.448, 0.405, 0.18, 0.03])
    assert ranked.columns.tolist() == ["rank", "path", "score", "Female:p", "Skirt&Dress:p", "Hat:p"]
    assert ranked["rank"].tolist() == [1, 2, 3, 4]
    assert "1 rows left out" in result.output and "Female & 'Skirt&Dress' & !Hat" in result.output

    page = (out / "search.html").read_text()
    assert page.count('class="item hit"') == 2 and page.count("data:image/jpeg;base64,") == 2  # found beside the table
    assert "Female &amp; &#x27;Skirt&amp;Dress&#x27; &amp; !Hat" in page and "44.80%" in page
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from anywhere


def test_parquet_gives_the_same_ranking_and_out_defaults_beside_the_table(table):
    for name in ("table.parquet", "table.csv"):
        result = RUNNER.invoke(app, ["search", str(table / name), "-q", "Hat | Female"])
        assert result.exit_code == 0, result.output
        scores = pd.read_csv(table / "search" / "search.csv")["score"].to_numpy()
        # p0 1 - .9 * .1, p2 1 - .5 * .4, p4 1 - .8 * .3, p1 1 - 1 * .8
        np.testing.assert_allclose(scores, [0.91, 0.8, 0.76, 0.2])


def test_a_missing_image_is_shown_as_missing_not_fatal(table, tmp_path):
    (table / "crops" / "p4.png").unlink()
    result = RUNNER.invoke(app, ["search", str(table / "table.csv"), "-q", "Female", "--out", str(tmp_path / "o"),
                                 "--top", "3"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "o" / "search.html").read_text()
    assert page.count("image not found or unreadable") == 1 and page.count("data:image/jpeg") == 2


@pytest.mark.parametrize("args, words", [
    (["-q", "Female & Backpak"], "no attribute 'Backpak'"),
    (["-q", "Skirt&Dress"], "quote it: 'Skirt&Dress'"),
    (["-q", "Female &"], "missing before the end"),
])
def test_bad_queries_give_one_line(table, args, words):
    result = RUNNER.invoke(app, ["search", str(table / "table.csv"), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], result.output
    assert not (table / "search").exists()


def test_bad_tables_give_one_line(table, tmp_path):
    missing = RUNNER.invoke(app, ["search", str(table / "tabel.csv"), "-q", "Female"])
    assert missing.exit_code == 2 and "does not exist" in missing.output and "table.csv" in missing.output
    bare = tmp_path / "bare.csv"
    pd.DataFrame({"path": ["a.png"], "Female": [1]}).to_csv(bare, index=False)
    result = RUNNER.invoke(app, ["search", str(bare), "-q", "Female"])
    assert result.exit_code == 2 and "no probability columns" in result.output
    no_path = tmp_path / "nopath.csv"
    pd.DataFrame({"Female": [1], "Female:p": [0.4]}).to_csv(no_path, index=False)
    result = RUNNER.invoke(app, ["search", str(no_path), "-q", "Female"])
    assert result.exit_code == 2 and "no 'path' column" in result.output


def test_single_label_attributes_are_searched_by_class(tmp_path):
    frame = pd.DataFrame({"path": ["a.png", "b.png"], "ok": [True, True], "error": ["", ""],
                          "weather": ["clear", "snow"], "weather:p(clear)": [0.6, 0.1], "weather:p(rain)": [0.3, 0.2],
                          "weather:p(snow)": [0.1, 0.7], "weather:entropy": [0.8, 0.7]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = RUNNER.invoke(app, ["search", str(tmp_path / "t.csv"), "-q", "Weather=Rain | weather=SNOW",
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    ranked = pd.read_csv(tmp_path / "o" / "search.csv")
    # two classes of one attribute exclude each other: P(rain) + P(snow)
    assert ranked["path"].tolist() == ["b.png", "a.png"]
    np.testing.assert_allclose(ranked["score"], [0.9, 0.4])
    assert ranked.columns.tolist()[3:] == ["weather:p(rain)", "weather:p(snow)"]
    assert "P(weather=rain)" in (tmp_path / "o" / "search.html").read_text()
    bare = RUNNER.invoke(app, ["search", str(tmp_path / "t.csv"), "-q", "weather"])
    assert bare.exit_code == 2 and "weather=<class>" in bare.output and "clear, rain, snow" in bare.output


def test_a_folder_of_parquet_shards_is_one_table(table):
    frame = pd.read_parquet(table / "table.parquet")
    frame["path"] = "../" + frame["path"]  # relative to the shards' folder
    (table / "shards").mkdir()
    frame.iloc[:2].to_parquet(table / "shards" / "part-0.parquet", index=False)
    frame.iloc[2:].to_parquet(table / "shards" / "part-1.parquet", index=False)
    result = RUNNER.invoke(app, ["search", str(table / "shards"), "-q", "Female", "--top", "4"])
    assert result.exit_code == 0, result.output
    ranked = pd.read_csv(table / "shards" / "search" / "search.csv")
    assert ranked["path"].tolist() == ["../crops/p0.png", "../crops/p4.png", "../crops/p2.png", "../crops/p1.png"]
    assert (table / "shards" / "search" / "search.html").read_text().count("data:image/jpeg") == 4
