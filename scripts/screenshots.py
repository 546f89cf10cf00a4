"""Screenshots for the docs, from the demo's CLIP-MHAdapter run, in headless Chromium.

    clipadapt demo --out runs/demo          # once (a few minutes on CPU)
    python scripts/screenshots.py [--run runs/demo/runs/mhadapter] [--out docs/img]

Writes report.png (the top of the HTML report), serve.png (the web page after an
upload) and attention.png (the explain panel of one test image). PNGs are reduced to a
256-colour palette when that keeps them under the size budget of the repository.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from PIL import Image

from clipadapt.errors import ClipAdaptError
from clipadapt.report import explain_images, write_report
from clipadapt.report.browser import find_chromium, launch
from clipadapt.report.gallery import read_predictions, resolve_image
from clipadapt.serve import ServedModel, ServeSettings, make_server

BUDGET = 300 * 1024  # bytes per PNG in docs/img
VIEWPORT = {"width": 1200, "height": 900}


def shrink(path: Path, max_width: int = 1400) -> Path:
    """Keep a PNG under BUDGET: narrower if very wide, then a 256-colour palette if needed."""
    with Image.open(path) as image:
        image = image.convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS)
        image.save(path, optimize=True)
    if path.stat().st_size > BUDGET:
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def example_image(run: Path) -> Path:
    """A test image of the run to show: the first whose every attribute is predicted
    right (a clear example of what the model does), else the first one on disk."""
    table = read_predictions(run / "predictions.csv")
    truths = [c for c in table.columns if c.endswith(":true")]
    right = table[[c[: -len(":true")] for c in truths]].to_numpy() == table[truths].to_numpy()
    ordered = list(table["path"][right.all(axis=1)]) + list(table["path"])
    for path in ordered:
        found = resolve_image(path, run)
        if found is not None:
            return found
    raise SystemExit(f"No test image of {run}/predictions.csv can be found on disk.")


def report_shot(browser, run: Path, out: Path) -> Path:
    report = run / "report.html"
    if not report.is_file():
        write_report(run)
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(report.resolve().as_uri())
    page.screenshot(path=str(out / "report.png"))
    page.close()
    return shrink(out / "report.png")


def serve_shot(browser, run: Path, image: Path, out: Path) -> Path:
    server = make_server(ServedModel(run), "127.0.0.1", 0, ServeSettings())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(server.url + "/")
        page.set_input_files("#file", str(image))
        page.wait_for_function("[...document.querySelectorAll('img.overlay')].some(i => i.complete && i.naturalWidth > 0)",
                               timeout=120_000)
        page.screenshot(path=str(out / "serve.png"), full_page=True)
        page.close()
    finally:
        server.shutdown()
        server.server_close()
    return shrink(out / "serve.png")


def attention_shot(run: Path, image: Path, out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        written = explain_images(run, [image], Path(tmp), per_head=False)
        panel = next(p for p in written if p.name.endswith("_panel.png"))
        shutil.copyfile(panel, out / "attention.png")
    return shrink(out / "attention.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo/runs/mhadapter"))
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args(argv)
    if not (args.run / "card.json").is_file():
        print(f"{args.run} is not a run folder; make it with `clipadapt demo --out runs/demo`.", file=sys.stderr)
        return 2
    chromium = find_chromium()
    if chromium is None:
        print("Chromium not found; install the Debian package `chromium` (or set CLIPADAPT_CHROMIUM).", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    image = example_image(args.run)
    try:
        with sync_playwright() as p:
            browser = launch(p, chromium)
            shots = [report_shot(browser, args.run, args.out), serve_shot(browser, args.run, image, args.out)]
            browser.close()
        shots.append(attention_shot(args.run, image, args.out))
    except ClipAdaptError as exc:  # e.g. a demo run made with other embedded weights
        print(f"error: {exc} (re-run `clipadapt demo --out runs/demo` first)", file=sys.stderr)
        return 2
    for shot in shots:
        print(f"wrote {shot} ({shot.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
