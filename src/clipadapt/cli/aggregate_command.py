"""`clipadapt aggregate`, as a plain function with typer parameters (cli/main.py registers it).

Free of torch: it reads tables and writes tables and a map (src/clipadapt/geo)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def aggregate_command(
    predictions: str = typer.Argument(..., help="A table from `clipadapt predict` (.csv, "
                                      ".parquet), a folder of Parquet shards or a quoted glob."),
    by: List[str] = typer.Option(..., "--by", help="h3:RES (the H3 cell at resolution 0..15 of each row's lat/lon) "
                                 "or a column, e.g. city; repeat for their combination."),
    out: Path = typer.Option(..., "--out", "-o", help="The table to write: .parquet (GeoParquet when grouped by "
                             "h3), .geojson or .csv."),
    map_file: Optional[Path] = typer.Option(None, "--map", help="Also write a self-contained HTML map of the "
                                            "shares per cell (needs --by h3:RES)."),
    attributes: Optional[str] = typer.Option(None, help="Comma-separated attributes to aggregate (default all)."),
    min_count: int = typer.Option(0, min=0, help="Drop a group's attribute when it has fewer images."),
    small_below: int = typer.Option(30, min=0, help="Flag a group as small (small = true; hatched on the map) "
                                    "below this many images."),
    confidence: float = typer.Option(0.95, help="Level of both intervals (between 0 and 1)."),
    batch_rows: int = typer.Option(65_536, min=1, help="Rows read at a time: memory, not results, depends on it."),
):
    """Class shares per place: per H3 cell (or column value) and attribute, the expected
    share of each class (mean of the calibrated probabilities) and the top-class share,
    each with an interval; streamed, so millions of rows need little memory
    (docs/geo.md)."""
    from clipadapt.cli.common import out_console, run_safely

    def go():
        from clipadapt.geo import aggregate
        from clipadapt.geo.writers import output_format, write_aggregate

        wanted = [a.strip() for a in attributes.split(",") if a.strip()] if attributes else None
        has_cells = any(b.lower().startswith("h3:") for b in by)
        output_format(out, has_cells)  # a bad --out before minutes of reading
        if map_file is not None:
            from clipadapt.geo.map import check_map_path

            check_map_path(map_file, has_cells)
        result = aggregate(predictions, list(by), attributes=wanted, confidence=confidence, min_count=min_count,
                           small_below=small_below, batch_rows=batch_rows)
        page = None
        if map_file is not None:  # rendered before anything is written: an error leaves no file behind
            from clipadapt.geo.map import render_map

            page = render_map(result)
        write_aggregate(result, out)
        written = [str(out)]
        if page is not None:
            from clipadapt.io import write_text

            write_text(map_file, page)
            written.append(str(map_file))
        out_console.print(f"aggregated {result.summary()}; wrote {', '.join(written)}", highlight=False,
                          soft_wrap=True)

    run_safely(go)
