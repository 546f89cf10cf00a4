"""`clipadapt search`, as a plain function with typer parameters (cli/main.py registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

SHOWN = 10  # at most this many rows in the terminal table (fewer with a smaller --top); the page shows --top


def search_command(
    predictions: str = typer.Argument(..., help="A table from `clipadapt predict` (.csv, .parquet, a folder of "
                                      "Parquet shards or a quoted glob) or a run's eval/predictions.csv."),
    query: str = typer.Option(..., "--query", "-q", help="Attributes joined by & (and), | (or), ! (not) and "
                              "parentheses, e.g. \"Female & Backpack & !Hat\"; attr=class for a single-label "
                              "attribute; quote names holding operators: \"'Skirt&Dress' & Female\" (docs/search.md)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for search.csv (every usable row, ranked) "
                                       "and search.html (the top hits). Default: a 'search' folder beside the table."),
    top: int = typer.Option(24, "--top", min=1, help="Hits shown in search.html."),
):
    """Rank images by the probability of an attribute query (e.g. "Female & Backpack &
    !Hat"), computed from each attribute's predicted probability; writes the ranked
    table and an HTML gallery of the top hits (docs/search.md)."""
    from clipadapt.cli.common import out_console, run_safely

    def go():
        from rich.markup import escape
        from rich.table import Table

        from clipadapt.search.files import write_search
        from clipadapt.search.rank import search
        from clipadapt.search.table import read_header

        header = read_header(predictions)
        result = search(header, query)
        # beside the table (a folder of shards: inside it)
        beside = Path(predictions) if Path(predictions).is_dir() else header.files.files[0].parent
        folder = out if out is not None else beside / "search"
        written = write_search(result, folder, top)
        rows = min(SHOWN, top, len(result.ranked))
        shown = Table(title=f"{escape(result.query)}: top {rows} of {len(result.ranked)}")
        for column in ("rank", "image", "score %", *(f"{c} %" for c in result.term_columns)):
            shown.add_column(escape(column), justify="left" if column == "image" else "right")
        for row in result.ranked.head(rows).to_dict("records"):
            shown.add_row(str(row["rank"]), escape(Path(str(row["path"])).name), f"{100 * row['score']:.1f}",
                          *(f"{100 * row[c]:.1f}" for c in result.term_columns))
        out_console.print(shown)
        left = f"; {result.left_out} rows left out (image unusable, ok = false)" if result.left_out else ""
        out_console.print(f"ranked {len(result.ranked)} rows{left}; wrote {written[0]} and {written[1]}",
                          highlight=False, soft_wrap=True)

    run_safely(go)


def print_retrieval(retrieval: dict) -> None:
    """`eval --retrieval`'s table: each query's AP, R@k and P@10 beside its base rate,
    then the means over queries."""
    from rich.markup import escape
    from rich.table import Table

    from clipadapt.cli.common import out_console

    scores = [key for key in retrieval["mean"] if key not in ("queries", "base_rate")]
    table = Table(title=f"retrieval ({escape(retrieval['queries_from'])}); R@k: {retrieval['r@k']}")
    for column in ("query", "relevant", "base rate", *(s.replace("map", "AP").upper() for s in scores)):
        table.add_column(column, justify="left" if column == "query" else "right")
    for row in retrieval["per_query"]:
        table.add_row(escape(row["query"]), f"{row['relevant']}/{row['rows']}", f"{100 * row['base_rate']:.1f}",
                      *(f"{100 * row['ap' if s == 'map' else s]:.1f}" for s in scores))
    groups = retrieval.get("by_terms", {})
    means = [(f"mean, {n}-term ({m['queries']})", m) for n, m in groups.items() if len(groups) > 1]
    for label, mean in [*means, (f"mean of {retrieval['mean']['queries']}", retrieval["mean"])]:
        table.add_row(label, "", f"{100 * mean['base_rate']:.1f}", *(f"{100 * mean[s]:.1f}" for s in scores))
    out_console.print(table)
    if retrieval["skipped"]:
        out_console.print(f"{len(retrieval['skipped'])} queries not scored (no relevant labelled row): "
                          + ", ".join(q["query"] for q in retrieval["skipped"]), highlight=False, soft_wrap=True)
