"""The docs' screenshot of `clipadapt aggregate --map`, from synthetic predictions, in
headless Chromium.

    python scripts/aggregate_map_screenshot.py [--out docs/img/aggregate-map.png]

60,000 synthetic street views over Singapore with calibrated weather probabilities
whose mix drifts across the island (rainier in the west), aggregated by h3:7; the
page is opened with one cell's tooltip showing. Nothing else is written.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from clipadapt.geo import aggregate
from clipadapt.geo.map import render_map
from clipadapt.geo.synthetic import CLASSES, calibrated_probabilities, synthetic_predictions
from clipadapt.report.browser import find_chromium, launch

BUDGET = 300 * 1024  # bytes per PNG in docs/img, as scripts/screenshots.py keeps them


def shrink(path: Path) -> Path:
    """Keep the PNG under BUDGET: a 256-colour palette when the full-colour file is larger."""
    from PIL import Image

    if path.stat().st_size > BUDGET:
        with Image.open(path) as image:
            image = image.convert("RGB")
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def street_views(rows: int = 60_000):
    """Singapore only, weather mixes varying west to east (rainier in the west)."""
    df = synthetic_predictions(rows, seed=3)
    rng = np.random.default_rng(5)
    df["lat"] = 1.3521 + rng.normal(0, 0.045, rows)
    df["lon"] = 103.8198 + rng.normal(0, 0.08, rows)
    df["city"] = "singapore"
    east = np.clip((df["lon"].to_numpy() - 103.65) / 0.35, 0, 1)[:, None]
    mix = (1 - east) * np.array([0.30, 0.30, 0.40, 0.0]) + east * np.array([0.65, 0.28, 0.07, 0.0])
    probs = calibrated_probabilities(np.random.default_rng(4), mix)
    ok = df["ok"].to_numpy()
    df["weather"] = np.where(ok, np.asarray(CLASSES["weather"], dtype=object)[probs.argmax(1)], "")
    for k, cls in enumerate(CLASSES["weather"]):
        df[f"weather:p({cls})"] = np.where(ok, probs[:, k], np.nan)
    return df


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/aggregate-map.png"))
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("Chromium not found; install the Debian package `chromium` (or set CLIPADAPT_CHROMIUM).", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        street_views().to_parquet(Path(tmp) / "preds.parquet", index=False)
        page_path = Path(tmp) / "map.html"
        page_path.write_text(render_map(aggregate(Path(tmp) / "preds.parquet", ["h3:7"], attributes=["weather"])))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = launch(p, chromium)
            page = browser.new_page(viewport={"width": 1100, "height": 860})
            page.goto(page_path.as_uri())
            page.wait_for_selector("body[data-ready='1']")
            page.select_option("#class", label="rainy")
            cells = page.locator("#cells path:not(.small)")
            box = cells.nth(cells.count() // 3).bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_selector("#tooltip:not([hidden])")
            page.screenshot(path=str(args.out))
            browser.close()
    shrink(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
