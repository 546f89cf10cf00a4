"""`clipadapt aggregate` at scale: 1 M and 10 M prediction rows, streamed vs pandas.

    python benchmarks/aggregate_scale.py [--sizes 1000000,10000000] [--tmp /tmp]

For each size, synthetic predictions (one 8-class attribute, float32 probabilities,
lat/lon uniform over Singapore, a 50-value `district` column, a path per row) are
written as Parquet shards a shard at a time (generation stays at one shard's memory),
into a temporary folder that is deleted afterwards. Each measurement runs in a fresh
interpreter, so its peak resident memory (ru_maxrss) is its own:

* streamed: clipadapt.geo.aggregate by h3:8 and by district;
* pandas: read every shard into one DataFrame, then groupby (what one writes first).

Both compute the same table; the benchmark checks that their shares agree and records
rows/s, peak RSS (and the RSS after imports, so the working memory can be told from
the libraries'), the ratios against pandas, and whether 10 M rows peak within 1.5x of
1 M (memory bounded by groups, not rows). Writes benchmarks/results/aggregate_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "aggregate_scale.json"
GROUPINGS = {"h3": "h3:8", "column": "district"}
TARGET_GROWTH = 1.5  # peak RSS at 10 M rows / at 1 M rows


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB.

    VmHWM of /proc/self/status where there is one: ru_maxrss is not enough on Linux,
    since a child started by fork + exec inherits its parent's maximum (it would report
    the generator's peak, not its own)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; the best elsewhere


# ------------------------------------------------------------------ one measurement (child)
def import_libraries() -> None:
    """Import what both contenders use before the clock starts (their import time and
    memory are the same for both, and not what is measured)."""
    import h3.api.basic_int  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import clipadapt.geo  # noqa: F401


def streamed(data: Path, by: str, result: Path) -> dict:
    from clipadapt.geo import aggregate

    imported = peak_rss_mib()
    start = time.perf_counter()
    table = aggregate(data, [by]).table
    seconds = time.perf_counter() - start
    table[["h3" if by.startswith("h3:") else by, "class", "n", "expected_share", "top_share"]].to_parquet(result)
    return {"seconds": seconds, "import_rss_mib": imported, "groups": int(table.iloc[:, 0].nunique())}


def with_pandas(data: Path, by: str, result: Path) -> dict:
    """The plain way: load every row, then groupby."""
    import numpy as np
    import pandas as pd

    import h3.api.basic_int as h3int

    imported = peak_rss_mib()
    start = time.perf_counter()
    df = pd.read_parquet(data)
    df = df[df["ok"]]
    key = by
    if by.startswith("h3:"):
        res = int(by[3:])
        df["h3"] = [f"{h3int.latlng_to_cell(a, b, res):x}" for a, b in zip(df["lat"].tolist(), df["lon"].tolist())]
        key = "h3"
    probs = [c for c in df.columns if c.startswith("scene:p(")]
    classes = [c[len("scene:p("):-1] for c in probs]
    grouped = df.groupby(key)
    means = grouped[probs].mean().set_axis(classes, axis=1)
    counts = pd.crosstab(df[key], df["scene"]).reindex(columns=classes, fill_value=0)
    n = grouped.size()
    seconds = time.perf_counter() - start
    tidy = means.stack().rename("expected_share").to_frame()
    tidy["top_share"] = (counts.div(n, axis=0)).stack()
    tidy["n"] = np.repeat(n.to_numpy(), len(classes))
    tidy.index.names = [key, "class"]
    tidy.reset_index().to_parquet(result)
    return {"seconds": seconds, "import_rss_mib": imported, "groups": int(n.size)}


def child(mode: str, data: Path, by: str, result: Path, rows: int) -> None:
    import_libraries()
    record = (streamed if mode == "streamed" else with_pandas)(data, by, result)
    record.update(peak_rss_mib=peak_rss_mib(), rows_per_s=rows / record["seconds"])
    print(json.dumps(record))


# ------------------------------------------------------------------ the driver (parent)
def measure(mode: str, data: Path, by: str, rows: int, out: Path) -> dict:
    """Run one measurement in a fresh interpreter; its JSON record."""
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--data", str(data), "--by", by,
                           "--result", str(out), "--rows", str(rows)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    if done.returncode != 0:
        raise SystemExit(f"{mode} {by} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def agreement(a: Path, b: Path, key: str) -> float:
    """Largest difference between the streamed and the pandas table's shares."""
    import pandas as pd

    left = pd.read_parquet(a).set_index([key, "class"]).sort_index()
    right = pd.read_parquet(b).set_index([key, "class"]).sort_index()
    assert left.index.equals(right.index) and (left["n"] == right["n"]).all()
    # float32 probabilities: pandas sums them in float32 chunks, clipadapt in float64
    return float(max((left["expected_share"] - right["expected_share"]).abs().max(),
                     (left["top_share"] - right["top_share"]).abs().max()))


def run_size(rows: int, shard_rows: int, tmp: Path, pandas: bool) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"aggregate-{rows}-", dir=tmp))
    try:
        start = time.perf_counter()
        # generated in a child too: this process stays small whatever the size
        generate = (f"from clipadapt.geo.synthetic import write_box_shards; "
                    f"write_box_shards({str(folder / 'shards')!r}, {rows}, shard_rows={min(shard_rows, rows)})")
        subprocess.run([sys.executable, "-c", generate], check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        record = {"rows": rows, "generate_s": round(time.perf_counter() - start, 2),
                  "disk_mib": round(sum(p.stat().st_size for p in (folder / "shards").iterdir()) / 2**20, 1)}
        for name, by in GROUPINGS.items():
            key = "h3" if by.startswith("h3:") else by
            runs = {"streamed": measure("streamed", folder / "shards", by, rows, folder / f"s-{name}.parquet")}
            if pandas:
                runs["pandas"] = measure("pandas", folder / "shards", by, rows, folder / f"p-{name}.parquet")
                runs["max_share_difference"] = agreement(folder / f"s-{name}.parquet", folder / f"p-{name}.parquet", key)
                runs["speed_vs_pandas"] = runs["streamed"]["rows_per_s"] / runs["pandas"]["rows_per_s"]
                runs["peak_rss_vs_pandas"] = runs["streamed"]["peak_rss_mib"] / runs["pandas"]["peak_rss_mib"]
            record[name] = runs
            line = f"{rows:>11,} rows by {by:<9} streamed {runs['streamed']['rows_per_s']:>11,.0f} rows/s " \
                   f"peak {runs['streamed']['peak_rss_mib']:7.0f} MiB"
            if pandas:
                line += f" | pandas {runs['pandas']['rows_per_s']:>11,.0f} rows/s peak " \
                        f"{runs['pandas']['peak_rss_mib']:7.0f} MiB | max diff {runs['max_share_difference']:.1e}"
            print(line, flush=True)
        return record
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--shard-rows", type=int, default=500_000)
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()), help="where the shards go (deleted)")
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas baseline")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--child", choices=["streamed", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--by", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.data, args.by, args.result, args.rows)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    records = [run_size(rows, args.shard_rows, args.tmp, not args.no_pandas) for rows in sizes]
    summary = {"date": date.today().isoformat(), "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                             "platform": platform.platform()},
               "groupings": GROUPINGS, "sizes": records}
    if len(records) >= 2:
        small, large = records[0], records[-1]
        growth = {name: large[name]["streamed"]["peak_rss_mib"] / small[name]["streamed"]["peak_rss_mib"]
                  for name in GROUPINGS}
        summary["acceptance"] = {"peak_rss_growth": growth, "rows_growth": large["rows"] / small["rows"],
                                 "target": f"<= {TARGET_GROWTH}x", "met": all(g <= TARGET_GROWTH for g in growth.values())}
        print(f"peak RSS {large['rows']:,} / {small['rows']:,} rows: "
              + ", ".join(f"{k} {v:.2f}x" for k, v in growth.items())
              + f" (target <= {TARGET_GROWTH}x: {'met' if summary['acceptance']['met'] else 'NOT met'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
