"""The HTML page of a search: the query, how its score is computed, and the top hits
as thumbnails with their probabilities. One self-contained file, like the run report
(inline CSS, images as data URIs, no scripts), built from the report's own helpers."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from clipadapt.data.images import load_image
from clipadapt.errors import ClipAdaptError
from clipadapt.report.attention import model_view
from clipadapt.report.embed import photo_uri
from clipadapt.report.gallery import resolve_image
from clipadapt.report.html import CSS
from clipadapt.report.sections import note, percent, section
from clipadapt.report.thumbnails import THUMBNAIL
from clipadapt.search.rank import SearchResult

EXTRA_CSS = """
.hit .score { font-size: 1rem; font-weight: 700; }
.hit dl { display: grid; grid-template-columns: max-content max-content; gap: 0 .5rem; margin: .2rem 0; }
.hit dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
code.query { font-size: 1.1rem; background: #f6f6f6; padding: .1rem .4rem; }
"""


def search_page(result: SearchResult, top: int) -> str:
    """The page for the first `top` rows of `result`."""
    hits = result.ranked.head(max(top, 0))
    figures = [_figure(row, folder, result.term_columns) for row, folder in
               zip(hits.to_dict("records"), result.folders[:len(hits)])]
    counts = (f"{len(result.ranked)} images ranked from {escape(str(result.source))}"
              + (f"; {result.left_out} left out because their image could not be used" if result.left_out else "")
              + f". The {len(hits)} most probable are shown.")
    how = ("Score: the probability of the query under the model, combining the per-attribute probabilities as if "
           "the attributes were independent given the image (and: product; not: 1 - p; or: 1 - (1 - p)(1 - q)), "
           "which is the joint probability a model with one output per attribute implies (docs/search.md).")
    body = (f'<p>Query: <code class="query">{escape(result.query)}</code></p>\n<p>{counts}</p>\n<p>{escape(how)}</p>\n'
            + ('<div class="grid">\n' + "\n".join(figures) + '\n</div>' if figures else note("No image to show.")))
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>clipadapt search: {escape(result.query)}</title>\n<style>{CSS}{EXTRA_CSS}</style>\n</head>\n<body>\n'
            f'<header>\n<p class="kicker">clipadapt search</p>\n<h1>{escape(result.query)}</h1>\n</header>\n<main>\n'
            f'{section("hits", "Top hits", body)}\n</main>\n</body>\n</html>\n')


def _figure(row: dict, folder: Path, term_columns: list[str]) -> str:
    path, rank, score = str(row["path"]), row["rank"], row["score"]
    name = Path(path).name
    thumb = _thumbnail(path, folder)
    if thumb is None:
        picture = f'<div class="missing">image not found or unreadable:<br>{escape(path)}</div>'
    else:
        picture = (f'<img src="{photo_uri(thumb)}" width="{THUMBNAIL}" height="{THUMBNAIL}" '
                   f'alt="Hit {rank}: {escape(name)}, score {percent(score)}%">')
    terms = "".join(f"<dt>{escape(term_label(column))}</dt><dd>{percent(row[column])}%</dd>" for column in term_columns)
    return (f'<figure class="item hit" data-rank="{rank}" data-score="{score:.6f}">\n'
            f'<div class="pictures">{picture}</div>\n<figcaption><span class="rank">#{rank}</span> '
            f'<span class="score">{percent(score)}%</span>\n<dl>{terms}</dl>\n'
            f'<span class="path" title="{escape(path)}">{escape(name)}</span></figcaption>\n</figure>')


def term_label(column: str) -> str:
    """'P(Hat)' for the column `Hat:p`, 'P(weather=rain)' for `weather:p(rain)`."""
    single = re.fullmatch(r"(.+):p\((.*)\)", column)
    return f"P({single[1]}={single[2]})" if single else f"P({column.removesuffix(':p')})"


def _thumbnail(path: str, folder: Path):
    """The whole image letterboxed into a THUMBNAIL square (a pedestrian crop is tall: a
    centre crop would cut off the head and the feet); None when it cannot be read."""
    found = resolve_image(path, folder)
    if found is None:
        return None
    try:
        return model_view(load_image(found), THUMBNAIL, preprocess="letterbox")
    except ClipAdaptError:
        return None
