"""`clipadapt aggregate --map`: the page is self-contained, and in headless Chromium it
draws every cell, fetches nothing, logs no error, and its tooltips show the aggregate
table's numbers.

Chromium is the system's (Debian package `chromium`), found as tests/test_browser.py
finds it; without it the browser tests are skipped with the reason.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.geo.synthetic import synthetic_predictions

RUNNER = CliRunner()
TIMEOUT_MS = 30_000
SHOWN = 0.05 + 1e-9  # tooltips show percentages with one decimal: within half of that


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(aggregate table, map path) for a small table of two far-apart cities, by H3 cell
    at resolution 7 and city (so the page offers 'zoom to city')."""
    root = tmp_path_factory.mktemp("aggregate-map")
    df = synthetic_predictions(2000, seed=11)
    df = df[df["city"] != "nairobi"]
    df.to_parquet(root / "preds.parquet", index=False)
    out, page = root / "cells.csv", root / "map.html"
    result = RUNNER.invoke(app, ["aggregate", str(root / "preds.parquet"), "--by", "h3:7", "--by", "city",
                                 "--out", str(out), "--map", str(page)])
    assert result.exit_code == 0, result.output
    return pd.read_csv(out, dtype={"h3": str}), page


def test_the_page_fetches_nothing(written):
    _, page = written
    html = page.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html), "every reference stays inside the page"
    assert "@import" not in html and "url(" not in html.replace("url(#", "")


# ------------------------------------------------------------------ in Chromium
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")


@pytest.fixture(scope="module")
def browser():
    from clipadapt.report.browser import find_chromium, launch

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed; install the Debian package `chromium` to run the browser tests.")
    with playwright_api.sync_playwright() as p:
        browser = launch(p, chromium)
        yield browser
        browser.close()


@pytest.fixture
def opened(browser, written):
    """(page, table, requests, errors) with the map loaded and its script run."""
    table, path = written
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    yield page, table, requests, errors
    context.close()


def tooltip(page) -> dict[str, str]:
    """The tooltip's fields, by their data-field names."""
    page.wait_for_selector("#tooltip:not([hidden])")
    return page.eval_on_selector_all("#tooltip [data-field]",
                                     "els => Object.fromEntries(els.map(e => [e.dataset.field, e.textContent]))")


def percent(text: str) -> float:
    return float(text.rstrip("%")) / 100


def check_tooltip(fields: dict, row: pd.Series, estimator: str) -> None:
    assert int(fields["n"]) == row["n"] and fields["class"] == row["class"]
    for name in ("share", "low", "high"):
        assert abs(percent(fields[f"{estimator}_{name}"]) - row[f"{estimator}_{name}"]) <= SHOWN / 100, (
            estimator, name, fields, row)


def test_every_cell_is_drawn_with_no_error_and_no_request(opened):
    page, table, requests, errors = opened
    drawn = page.eval_on_selector_all("#cells path", "ps => ps.map(p => [p.dataset.cell, p.getAttribute('fill')])")
    assert sorted(c for c, _ in drawn) == sorted(table["h3"].unique())
    assert all(fill and fill != "none" for _, fill in drawn)
    box = page.eval_on_selector("#map", "svg => { const b = svg.getBBox(); return [b.width, b.height]; }")
    assert box[0] > 100 and box[1] > 100
    assert requests == [page.url], f"the page fetched {requests[1:]}"
    assert not errors, errors


def test_a_tooltip_shows_the_tables_numbers(opened):
    page, table, _, errors = opened
    weather = table[(table["attribute"] == "weather") & ~table["small"]]
    row = weather[weather["class"] == "clear"].sort_values("n").iloc[-1]
    page.focus(f"#cells path[data-cell='{row['h3']}']")  # keyboard focus shows it as hover does
    fields = tooltip(page)
    assert fields["cell"] == row["h3"]
    for estimator in ("expected", "top"):
        check_tooltip(fields, row, estimator)

    # another attribute, class and estimator, by mouse (zoomed in: at the whole extent,
    # Singapore and Amsterdam leave each cell a fraction of a pixel)
    page.select_option("#zoom", "singapore")
    page.select_option("#attribute", "lighting")
    page.select_option("#class", label="night")
    page.select_option("#estimator", "top")
    lighting = table[(table["attribute"] == "lighting") & (table["class"] == "night") & (table["city"] == "singapore")]
    row = lighting.sort_values("n").iloc[len(lighting) // 2]
    page.hover(f"#cells path[data-cell='{row['h3']}']")
    fields = tooltip(page)
    assert fields["cell"] == row["h3"] and fields["class"] == "night"
    check_tooltip(fields, row, "top")
    assert page.text_content("#legend-title").startswith("top-class share of night")
    assert not errors, errors


def test_small_cells_are_hatched_and_the_largest_share_gets_the_top_colour(opened):
    page, table, _, _ = opened
    fills = dict(page.eval_on_selector_all("#cells path", "ps => ps.map(p => [p.dataset.cell, p.getAttribute('fill')])"))
    rows = table[(table["attribute"] == "weather") & (table["class"] == "clear")]
    for cell, small in zip(rows["h3"], rows["small"]):
        assert (fills[cell] == "url(#hatch)") == bool(small), cell
    big = rows[~rows["small"]]
    top = big.sort_values("expected_share").iloc[-1]
    assert fills[top["h3"]] == "rgb(253,231,37)"  # the palette's last colour
    assert abs(percent(page.text_content("#legend-high")) - top["expected_share"]) <= SHOWN / 100


def test_the_map_zooms_and_returns_to_the_whole_extent(opened):
    page, _, _, errors = opened
    home = page.get_attribute("#map", "viewBox")
    width = lambda: float(page.get_attribute("#map", "viewBox").split()[2])  # noqa: E731
    page.mouse.move(500, 500)
    page.hover("#map", position={"x": 300, "y": 200})
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"document.getElementById('map').getAttribute('viewBox') !== {home!r}")
    assert width() < float(home.split()[2])
    page.click("#reset")
    assert page.get_attribute("#map", "viewBox") == " ".join(f"{float(v):.3f}" for v in home.split())
    assert not errors, errors
