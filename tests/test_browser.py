"""What a person sees, in headless Chromium: the HTML report opened from disk, and the
web page of `clipadapt serve` with an image uploaded through its file input.

Chromium is the system's (Debian package `chromium`); when it is missing the fixture
tries `apt-get install -y chromium` (as root only), else the tests are skipped with
the reason.
"""

from __future__ import annotations

import json
import re

import pytest
from test_report_support import ATTRIBUTES, make_run
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.report.browser import find_chromium, install_chromium, launch
from clipadapt.serve import ServedModel, ServeSettings, create_app
from clipadapt.serve.runner import Server

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
RUNNER = CliRunner()
TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def chromium():
    """The Chromium executable, installed with apt-get when missing and possible."""
    found = find_chromium()
    if found is None:
        why = install_chromium(timeout=600)
        found = find_chromium()
        if found is None:
            pytest.skip(f"Chromium is not installed and could not be installed ({why or 'no executable after apt-get'}); "
                        "install the Debian package `chromium` to run the browser tests.")
    return found


@pytest.fixture(scope="module")
def browser(chromium):
    with playwright_api.sync_playwright() as p:
        browser = launch(p, chromium)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def run(tmp_path_factory, micro_backbone):
    return make_run(tmp_path_factory.mktemp("browser") / "run", micro_backbone)


def loaded_images(page, selector: str) -> list[int]:
    """naturalWidth of every image matching `selector` (0 = it did not load)."""
    return page.eval_on_selector_all(selector, "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")


# ------------------------------------------------------------------ the report
def test_report_shows_metrics_confusion_matrices_and_curves(page, run, tmp_path):
    out = tmp_path / "report.html"
    result = RUNNER.invoke(app, ["report", str(run), "--out", str(out), "--gallery", "4"])
    assert result.exit_code == 0, result.output
    page.goto(out.as_uri())
    assert "clipadapt report" in page.title()

    metrics = json.loads((run / "metrics.json").read_text())
    rows = page.locator("#metrics table tbody tr")
    assert rows.count() == len(ATTRIBUTES) + 1  # one per attribute + the mean
    for i, name in enumerate(ATTRIBUTES):
        cells = rows.nth(i).locator("th, td").all_inner_texts()
        m = metrics["attributes"][name]
        assert cells[0] == name
        assert cells[1:5] == [f"{100 * m[k]:.2f}" for k in ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy")]
    mean_cells = rows.nth(len(ATTRIBUTES)).locator("td").all_inner_texts()
    assert mean_cells[0] == f"{100 * metrics['mean']['accuracy']:.2f}"
    assert page.locator("#metrics table").is_visible()

    confusion = loaded_images(page, "#confusion img")
    assert len(confusion) == len(ATTRIBUTES) and all(w > 100 for w in confusion)
    assert page.locator("#confusion figcaption").first.inner_text().startswith("weather")
    curves = loaded_images(page, "#curves img")
    assert len(curves) == 1 and curves[0] > 100
    gallery = loaded_images(page, "#gallery img")
    assert gallery and all(w > 0 for w in gallery)
    assert page.locator("#gallery figure.wrong").count() > 0


# ------------------------------------------------------------------ the web page
@pytest.fixture(scope="module")
def served(run):
    return ServedModel(run)


@pytest.fixture(scope="module")
def service(served):
    server = Server(create_app(served, ServeSettings(request_timeout=10.0)), "127.0.0.1", 0).start()
    yield server
    server.stop()


def test_uploading_an_image_shows_every_prediction_and_the_overlays(page, service, run):
    page.goto(service.url + "/")
    page.wait_for_function("document.getElementById('info').textContent.includes('mhadapter')")
    image = run / "images" / "img0.png"
    page.set_input_files("#file", str(image))
    page.wait_for_selector(".result .attribute")

    answer = json.loads(_post(service.url, image.read_bytes()))["predictions"][0]
    for name in ATTRIBUTES:
        block = page.locator(f'.attribute[data-attribute="{name}"]')
        expected = answer["attributes"][name]
        assert block.locator("h3").inner_text() == f"{name}: {expected['predicted']}"
        shown = block.locator(".row").all_inner_texts()
        assert len(shown) == len(expected["probabilities"])  # a bar for every class
        top = f"{100 * expected['probabilities'][expected['predicted']]:.1f}%"
        assert block.locator(".row.top .pct").inner_text() == top
        assert all(re.search(r"\d+\.\d%$", text.strip()) for text in shown)
    overlays = page.locator("img.overlay")
    page.wait_for_function("[...document.querySelectorAll('img.overlay')].every(i => i.complete && i.naturalWidth > 0)")
    assert overlays.count() == len(ATTRIBUTES)
    assert set(loaded_images(page, "img.overlay")) == {224}
    assert set(page.locator(".overlays figcaption").all_inner_texts()) == set(ATTRIBUTES)
    assert page.locator("#error").inner_text() == ""


def test_uploading_a_non_image_shows_the_reason(page, service, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a text file with a .jpg name")
    page.goto(service.url + "/")
    page.set_input_files("#file", str(fake))
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    message = page.locator("#error").inner_text()
    assert "holiday.jpg" in message and "not an image" in message
    assert page.locator(".result").count() == 0


def _post(url: str, data: bytes) -> bytes:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url + "/api/predict", data=data), timeout=30) as response:
        return response.read()


def test_a_service_with_a_key_asks_for_it_and_sends_it(page, served, run):
    key = "browser-key-7Hq2"
    server = Server(create_app(served, ServeSettings(request_timeout=10.0), keys=[key]), "127.0.0.1", 0).start()
    try:
        page.goto(server.url + "/")
        page.wait_for_selector("#key", state="visible")
        assert "needs an API key" in page.locator("#keymsg").inner_text()
        page.fill("#key", "not-the-key")
        page.click("#keysend")
        page.wait_for_function("document.getElementById('keymsg').textContent.includes('not accepted')")
        page.fill("#key", key)
        page.click("#keysend")
        page.wait_for_function("document.getElementById('info').textContent.includes('mhadapter')")
        assert page.locator("#keybox").is_hidden()
        page.set_input_files("#file", str(run / "images" / "img0.png"))
        page.wait_for_selector(".result .attribute")
        assert page.locator(".attribute").count() == len(ATTRIBUTES) and page.locator("#error").inner_text() == ""
    finally:
        server.stop()
