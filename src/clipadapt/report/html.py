"""`clipadapt report`: one self-contained HTML page per run.

Everything is inside the file (inline CSS, images as base64 data URIs, no scripts, no
web fonts), so it opens offline, survives being mailed or attached to an issue, and
never makes the reader's browser contact anyone.
"""

from __future__ import annotations

import warnings
from html import escape
from pathlib import Path

from clipadapt.engine.card import as_card
from clipadapt.engine.checkpoint import read_card
from clipadapt.io import write_text
from clipadapt.errors import ClipAdaptError, ClipAdaptWarning
from clipadapt.report.sections import (
    calibration_section, card_section, confusion_section, curves_section, metrics_section, per_class_section,
    read_json, summary, thresholds_section, warnings_banner,
)
from clipadapt.report.retrieval_section import retrieval_section
from clipadapt.report.thumbnails import gallery_section
from clipadapt.run_files import RunFiles

REPORT_NAME = RunFiles.REPORT
# the page's sections in order; a link is shown only for a section the page has (thresholds:
# multi-label runs; retrieval: `eval --retrieval`)
NAV = (("metrics", "Metrics"), ("per-class", "Per-class accuracy"), ("confusion", "Confusion"), ("calibration", "Calibration"),
       ("thresholds", "Thresholds"), ("retrieval", "Search"), ("curves", "Curves"), ("gallery", "Gallery"),
       ("card", "Run card"))

# Colours from the Okabe-Ito palette; wrong/right are also written as words (never colour alone).
CSS = """
:root { --ink: #1b1b1b; --muted: #555; --line: #d0d0d0; --wrong: #D55E00; --right: #0072B2; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       max-width: 1150px; margin: 0 auto; padding: 1rem 1.5rem 3rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin: 0 0 .4rem; }
.kicker { color: var(--muted); margin: 0; text-transform: uppercase; font-size: .8rem; letter-spacing: .05em; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: .2rem; margin-top: 2.2rem; }
nav a { margin-right: 1rem; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; }
.facts dt { font-weight: 600; } .facts dd { margin: 0; word-break: break-word; }
table { border-collapse: collapse; margin: .5rem 0; }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: .85rem; padding-top: .3rem; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .7rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.mean th, tr.mean td { font-weight: 700; border-top: 2px solid var(--ink); }
img.figure { max-width: 100%; height: auto; display: block; margin: .5rem 0; }
figure { margin: .5rem 0 1rem; }
.note { color: var(--muted); font-style: italic; }
.banner { border: 2px solid var(--wrong); border-radius: 4px; padding: 0 1rem; margin: 1rem 0; background: #fff4ec; }
.grid { display: flex; flex-wrap: wrap; gap: .8rem; }
.item { margin: 0; padding: .4rem; border: 2px solid var(--line); border-radius: 4px; font-size: .8rem; }
.item.wrong { border-color: var(--wrong); } .item.right { border-color: var(--right); }
.item .pictures { display: flex; gap: 2px; }
.item .verdict { text-transform: uppercase; letter-spacing: .03em; }
.item.wrong .verdict { color: var(--wrong); } .item.right .verdict { color: var(--right); }
.item .path { color: var(--muted); display: inline-block; max-width: 320px; overflow: hidden;
              text-overflow: ellipsis; white-space: nowrap; }
.missing { width: 160px; height: 160px; background: #eee; font-size: .7rem; overflow: hidden; word-break: break-all; }
pre { background: #f6f6f6; padding: .8rem; overflow-x: auto; font-size: .8rem; }
"""


def write_report(run_dir: Path, out: Path | None = None, gallery: int = 24, results: Path | None = None) -> Path:
    """Write a self-contained HTML report of a run folder and return its path.

    Args:
        run_dir: a folder written by `clipadapt train` (needs card.json; every other
            file is optional and its section says so when it is missing).
        out: the HTML file (default RESULTS/report.html; a folder gets report.html in it).
        gallery: test images shown per attribute, mistakes first (0 = no gallery).
        results: the folder of the evaluation to show (metrics.json, predictions.csv,
            confusion PNGs), e.g. what `clipadapt eval` wrote; default the run folder.
            The card, curves and weights always come from `run_dir`.

    Raises:
        ClipAdaptError: not a run folder, or a negative gallery size.
    """
    run_dir = Path(run_dir)
    if gallery < 0:
        raise ClipAdaptError(f"gallery must be 0 or more images per attribute, got {gallery}.")
    card = read_card(run_dir)
    results = Path(results) if results is not None else run_dir
    metrics, why = read_json(results / RunFiles.METRICS)
    if metrics is not None and not isinstance(metrics, dict):
        metrics, why = None, "metrics.json does not hold a metrics object"
    body = "\n".join([
        warnings_banner(card, metrics),
        summary(card, run_dir),
        metrics_section(metrics, why),
        per_class_section(metrics),
        confusion_section(results, card, metrics),
        calibration_section(metrics, card),
        thresholds_section(metrics, card),  # empty unless the run is multi-label
        retrieval_section(metrics),  # empty unless `eval --retrieval` scored queries
        curves_section(run_dir),
        gallery_section(run_dir, card, gallery, results),
        card_section(card),
    ])
    target = Path(out) if out is not None else results / REPORT_NAME
    if target.is_dir():
        target = target / REPORT_NAME
    write_text(target, page(title(card), body))
    return target


class ReportWarning(ClipAdaptWarning):
    """A run finished but its HTML report could not be written."""


def write_report_or_warn(run_dir: Path, results: Path | None = None) -> Path | None:
    """`write_report` at the end of train / eval: any failure becomes a warning, because
    the run itself is complete and must not be lost over a figure. Returns the path, or
    None when no report was written."""
    try:
        return write_report(run_dir, results=results)
    except Exception as exc:  # noqa: BLE001 - whatever broke the report, the run stands
        warnings.warn(f"The run in {run_dir} is complete, but its HTML report could not be written "
                      f"({type(exc).__name__}: {exc}); retry with `clipadapt report {run_dir}`.",
                      ReportWarning, stacklevel=2)
        return None


def title(card: dict) -> str:
    card = as_card(card)
    backbone = card.backbone
    weights = backbone.get("pretrained") or "random weights"
    return f"{card.method} on {backbone.get('name', '?')} ({weights})"


def page(heading: str, body: str) -> str:
    """The HTML document around the sections."""
    nav = " ".join(f'<a href="#{anchor}">{label}</a>' for anchor, label in NAV if f'id="{anchor}"' in body)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>clipadapt report: {escape(heading)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n'
        f'<header>\n<p class="kicker">clipadapt run report</p>\n<h1>{escape(heading)}</h1>\n'
        f'<nav aria-label="sections">{nav}</nav>\n</header>\n<main>\n{body}\n</main>\n</body>\n</html>\n'
    )
