"""Row (i): `clipadapt aggregate` at scale, streamed vs pandas read-then-groupby.

A thin row over benchmarks/aggregate_scale.py: its `main` runs the sizes (each contender
in a fresh interpreter, peak RSS its own VmHWM) and writes its record to a temporary file
here, so the standalone record benchmarks/results/aggregate_scale.json is left alone;
`rows_from_record` turns a record (that one or the committed one) into the suite's rows:

* i: streamed / pandas rows/s at the largest size, grouped by h3:8 (by column in the note);
* i-memory: streamed peak RSS at the largest size over the smallest (10 M / 1 M rows).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import aggregate_scale
from bench_common import Row, rows_from_committed_record

RECORD = aggregate_scale.RESULT


def rows_from_record(record: dict, command: str) -> list[Row]:
    """The rows of an aggregate_scale record (two sizes or more, pandas measured)."""
    small, large = record["sizes"][0], record["sizes"][-1]
    h3, column = large["h3"], large["column"]
    speed = round(h3["speed_vs_pandas"], 2)
    note = (f"{large['rows']:,} rows: by h3:8 {h3['streamed']['rows_per_s']:,.0f} vs {h3['pandas']['rows_per_s']:,.0f} "
            f"rows/s, by district {column['speed_vs_pandas']:.2f}x; peak RSS vs pandas "
            f"{h3['peak_rss_vs_pandas']:.3f} (h3) / {column['peak_rss_vs_pandas']:.3f} (district); "
            f"max share difference {max(h3['max_share_difference'], column['max_share_difference']):.0e}")
    acceptance = record["acceptance"]
    growth = max(acceptance["peak_rss_growth"].values())
    peak = [{name: size[name]["streamed"]["peak_rss_mib"] for name in ("h3", "column")} for size in (small, large)]
    memory_note = (f"streamed peak {peak[0]['h3']:.0f} -> {peak[1]['h3']:.0f} MiB (h3), "
                   f"{peak[0]['column']:.0f} -> {peak[1]['column']:.0f} MiB (district), libraries "
                   f"~{h3['streamed']['import_rss_mib']:.0f} MiB included; pandas {h3['pandas']['peak_rss_mib']:.0f} "
                   f"MiB at {large['rows']:,} rows (h3)")
    details = {"sizes": record["sizes"], "acceptance": acceptance, "groupings": record.get("groupings"),
               "record_date": record.get("date")}
    sizes = f"{small['rows']:,} -> {large['rows']:,}"
    return [Row("i", f"aggregate {large['rows']:,} predictions by h3:8: streamed vs pandas read-then-groupby", speed,
                "x rows/s", "ratio (no target)", None, command, note, details),
            Row("i-memory", f"aggregate peak RSS, {sizes} rows (streamed, max over h3:8 and district)",
                round(growth, 2), f"x at {acceptance['rows_growth']:g}x rows", acceptance["target"],
                bool(acceptance["met"]), command, memory_note, {"peak_rss_growth": acceptance["peak_rss_growth"]})]


def run(ctx) -> list[Row]:
    """Measure (i): 1 M and 10 M rows (quick: 2,000 and 20,000, one shard each)."""
    sizes = "2000,20000" if ctx.quick else "1000000,10000000"
    with tempfile.TemporaryDirectory(prefix="row-aggregate-") as tmp:
        out = Path(tmp) / "aggregate_scale.json"
        aggregate_scale.main(["--sizes", sizes, "--tmp", tmp, "--out", str(out)])
        record = json.loads(out.read_text())
    return rows_from_record(record, ctx.command("i"))


def from_record(ctx) -> list[Row]:
    """Rows (i) from the standalone benchmark's committed record, with its date."""
    return rows_from_committed_record(RECORD, rows_from_record, ctx.command("i"), aggregate_scale.ROOT, "date")
