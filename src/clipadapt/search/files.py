"""The files of a search: the ranked table (CSV) and the gallery page (HTML)."""

from __future__ import annotations

from pathlib import Path

from clipadapt.errors import ClipAdaptError
from clipadapt.io import atomic_write, write_text
from clipadapt.search.rank import SearchResult

TABLE_NAME = "search.csv"
PAGE_NAME = "search.html"


def write_search(result: SearchResult, out: Path, top: int) -> tuple[Path, Path]:
    """OUT/search.csv (every usable row, ranked: rank, path, score, each term's
    probability) and OUT/search.html (the first `top` rows as a gallery)."""
    from clipadapt.search.gallery import search_page  # the report's helpers import torch: only here

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ClipAdaptError(f"--out {out} is a file; pass a folder (search.csv and search.html are written in it).")
    page = search_page(result, top)  # before anything is written: an error leaves no half result
    out.mkdir(parents=True, exist_ok=True)
    table, html = out / TABLE_NAME, out / PAGE_NAME
    atomic_write(table, lambda p: result.ranked.to_csv(p, index=False))
    write_text(html, page)
    return table, html
