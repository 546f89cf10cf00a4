"""`clipadapt aggregate`: class shares per H3 cell / column, checked against an independent
pandas recomputation, across input layouts and batch sizes, with every bad input
answered in one line (or left out and counted)."""

from __future__ import annotations

import builtins
import json
import struct

import h3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.errors import ClipAdaptError
from clipadapt.geo import aggregate
from clipadapt.geo.intervals import normal_interval, wilson_interval, z_value
from clipadapt.geo.synthetic import CITIES, CLASSES, synthetic_predictions

RUNNER = CliRunner()
TOL = 1e-9
ROWS = 3000


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """A predictions table with a few rows of every kind to leave out."""
    df = synthetic_predictions(ROWS, seed=7)
    df.loc[10:14, ["lat", "lon"]] = np.nan                 # no coordinates
    df.loc[20:22, "lat"] = 95.0                            # impossible latitude
    df.loc[30:31, "lon"] = -200.0                          # impossible longitude
    return df


@pytest.fixture(scope="module")
def files(table, tmp_path_factory):
    """The same table as one Parquet file, a CSV, and a folder of uneven Parquet shards."""
    root = tmp_path_factory.mktemp("aggregate")
    table.to_parquet(root / "preds.parquet", index=False)
    table.to_csv(root / "preds.csv", index=False)
    shards = root / "shards"
    shards.mkdir()
    for i, (start, stop) in enumerate([(0, 700), (700, 710), (710, 2100), (2100, ROWS)]):
        table.iloc[start:stop].to_parquet(shards / f"part-{i:03d}.parquet", index=False)
    (shards / "_SUCCESS").write_text("")  # what Spark / Ray writers leave beside their shards
    return root


def usable(df: pd.DataFrame, coordinates: bool = True) -> pd.DataFrame:
    keep = df["ok"].astype(bool)
    if coordinates:
        keep &= df["lat"].abs().le(90) & df["lon"].abs().le(180)  # NaN compares False
    return df[keep]


def expected_table(df: pd.DataFrame, by: list[str], res: int | None = None, confidence: float = 0.95,
                   small_below: int = 30) -> pd.DataFrame:
    """The aggregate recomputed the plain way: a cell per row with h3's string API,
    groupby mean / var of the probabilities, top-class counts, scipy's quantiles and
    closed-form Wilson bounds."""
    df = usable(df, coordinates=res is not None).copy()
    if res is not None:
        df["h3"] = [h3.latlng_to_cell(la, lo, res) for la, lo in zip(df["lat"], df["lon"])]
    z = stats.norm.ppf(0.5 + confidence / 2)
    frames = []
    for attribute, classes in CLASSES.items():
        for cls in classes:
            p = df.groupby(by)[f"{attribute}:p({cls})"]
            hits = (df[attribute] == cls).groupby([df[k] for k in by]).sum()
            n = p.count().astype(float)
            mean, sd = p.mean(), p.std(ddof=1)
            half = z * sd / np.sqrt(n)
            center = (hits + z * z / 2) / (n + z * z)
            whalf = z / (n + z * z) * np.sqrt(hits * (n - hits) / n + z * z / 4)
            frames.append(pd.DataFrame({
                "attribute": attribute, "class": cls, "n": n.astype(np.int64), "expected_share": mean,
                "expected_low": (mean - half).clip(0, 1).where(n > 1, 0.0),
                "expected_high": (mean + half).clip(0, 1).where(n > 1, 1.0),
                "top_share": hits / n, "top_low": (center - whalf).clip(0, 1), "top_high": (center + whalf).clip(0, 1),
                "small": n < small_below}).reset_index())
    return pd.concat(frames, ignore_index=True)


def same(got: pd.DataFrame, want: pd.DataFrame, keys: list[str]) -> None:
    """Equal row for row after sorting by keys, attribute and class; numbers within TOL."""
    order = [*keys, "attribute", "class"]
    got = got.sort_values(order).reset_index(drop=True)
    want = want[got.columns].sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=TOL, rtol=0, check_dtype=False)


# ------------------------------------------------------------------ the numbers
def test_h3_shares_equal_an_independent_pandas_recomputation(files, table):
    result = aggregate(files / "preds.parquet", ["h3:7"])
    assert list(result.table.columns) == ["h3", "attribute", "class", "n", "expected_share", "expected_low",
                                          "expected_high", "top_share", "top_low", "top_high", "small"]
    same(result.table, expected_table(table, ["h3"], res=7), ["h3"])
    assert result.table["small"].any() and not result.table["small"].all()  # both kinds of cell are exercised
    # every class share of a group adds up to one, both estimators
    sums = result.table.groupby(["h3", "attribute"])[["expected_share", "top_share"]].sum()
    assert np.allclose(sums, 1.0)


def test_column_and_combined_groupings_equal_the_recomputation(files, table):
    by_city = aggregate(files / "preds.parquet", ["city"])
    same(by_city.table, expected_table(table, ["city"]), ["city"])
    both = aggregate(files / "preds.parquet", ["h3:6", "city"])
    same(both.table, expected_table(table, ["h3", "city"], res=6), ["h3", "city"])


def test_the_expected_share_recovers_the_known_mix_and_the_top_share_does_not(files):
    """Calibrated probabilities: the mean lands on each city's true mix; counting top
    classes over-counts the majority class."""
    shares = aggregate(files / "preds.parquet", ["city"]).table.set_index(["city", "attribute", "class"])
    for city, (_, mixes) in CITIES.items():
        for cls, truth in zip(CLASSES["weather"], mixes["weather"]):
            row = shares.loc[(city, "weather", cls)]
            sd = (row["expected_high"] - row["expected_low"]) / (2 * 1.96)
            assert abs(row["expected_share"] - truth) < 4 * sd + 1e-3, (city, cls)
        majority = CLASSES["weather"][int(np.argmax(mixes["weather"]))]
        # biased beyond its own interval: the truth is below the top-class share's lower bound
        assert shares.loc[(city, "weather", majority), "top_low"] > max(mixes["weather"])


@pytest.mark.parametrize("source", ["preds.csv", "shards", "shards/*.parquet"])
def test_every_input_layout_and_a_tiny_batch_give_the_same_table(files, source):
    reference = aggregate(files / "preds.parquet", ["h3:7", "city"]).table
    for batch_rows in (None, 97):
        kwargs = {"batch_rows": batch_rows} if batch_rows else {}
        got = aggregate(str(files / source), ["h3:7", "city"], **kwargs).table
        pd.testing.assert_frame_equal(got, reference, check_exact=False, atol=1e-12, rtol=0)


def test_the_summary_counts_every_row_left_out(files, table):
    result = aggregate(files / "preds.parquet", ["h3:8"])
    not_ok = int((~table["ok"]).sum())
    assert result.rows_read == ROWS and result.rows_used == len(usable(table))
    # rows failing twice (not ok and no coordinates) count once, as not ok
    ok = table["ok"]
    assert result.left_out["rows with ok=false"] == not_ok
    assert result.left_out["rows without coordinates (NaN / empty)"] == int((ok & table["lat"].isna()).sum())
    assert result.left_out["rows with coordinates out of range (|lat| > 90 or |lon| > 180)"] == int(
        (ok & ((table["lat"].abs() > 90) | (table["lon"].abs() > 180))).sum())
    line = result.summary()
    assert f"{result.rows_used:,} of {ROWS:,} rows" in line and f"{not_ok} rows with ok=false" in line


def test_min_count_drops_and_small_flags(files):
    flagged = aggregate(files / "preds.parquet", ["h3:7"], small_below=50).table
    dropped = aggregate(files / "preds.parquet", ["h3:7"], min_count=50).table
    assert (flagged["small"] == (flagged["n"] < 50)).all()
    assert dropped["n"].min() >= 50 and set(dropped["h3"]) < set(flagged["h3"])
    kept = flagged[flagged["n"] >= 50].reset_index(drop=True)
    pd.testing.assert_frame_equal(dropped.drop(columns="small"), kept.drop(columns="small"))


def test_attributes_option_keeps_those_in_its_order(files):
    result = aggregate(files / "preds.parquet", ["city"], attributes=["lighting"])
    assert set(result.table["attribute"]) == {"lighting"}
    assert list(result.table["class"][:3]) == list(CLASSES["lighting"])


def test_a_multilabel_table_gives_present_shares(tmp_path):
    rng = np.random.default_rng(3)
    n = 400
    p = rng.beta(2, 5, n)
    df = pd.DataFrame({"path": [f"{i}.jpg" for i in range(n)], "ok": True, "error": "",
                       "zone": rng.choice(["north", "south"], n), "umbrella": (p > 0.4).astype(int), "umbrella:p": p})
    df.to_parquet(tmp_path / "ml.parquet")
    got = aggregate(tmp_path / "ml.parquet", ["zone"]).table.set_index("zone")
    assert set(got["class"]) == {"present"}
    for zone, rows in df.groupby("zone"):
        assert got.loc[zone, "n"] == len(rows)
        assert abs(got.loc[zone, "expected_share"] - rows["umbrella:p"].mean()) < TOL
        assert abs(got.loc[zone, "top_share"] - rows["umbrella"].mean()) < TOL


# ------------------------------------------------------------------ intervals
@pytest.mark.parametrize(("hits", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (1, 250), (499, 1000)])
def test_wilson_matches_scipy(hits, n):
    want = stats.binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(np.array([hits]), np.array([n]), z_value(0.95))
    assert abs(low[0] - want.low) < 1e-12 and abs(high[0] - want.high) < 1e-12


def test_normal_interval_matches_scipy_and_is_clipped():
    rng = np.random.default_rng(0)
    for values in (rng.beta(2, 3, 40), rng.beta(0.2, 8, 25), np.full(5, 0.999999)):
        n, mean = len(values), values.mean()
        m2 = ((values - mean) ** 2).sum()
        low, high = normal_interval(np.array([mean]), np.array([m2]), np.array([n]), z_value(0.9))
        want = stats.norm.interval(0.9, loc=mean, scale=stats.sem(values))
        assert abs(low[0] - max(want[0], 0)) < 1e-12 and abs(high[0] - min(want[1], 1)) < 1e-12
    low, high = normal_interval(np.array([0.3]), np.array([0.0]), np.array([1]), 1.96)
    assert (low[0], high[0]) == (0.0, 1.0)  # one image: no spread to estimate


def test_confident_probabilities_keep_their_spread_in_the_stream():
    """A raw sum of p^2 would lose a variance of 1e-12 under a mean near 1; the merged
    M2 keeps it across batches."""
    from clipadapt.geo.accumulators import ShareAccumulator
    from clipadapt.geo.layout import AttributeColumns

    rng = np.random.default_rng(1)
    p = 1 - 1e-6 * rng.random(10_000)
    acc = ShareAccumulator(AttributeColumns("a", True, ("present",), ("a:p",)))
    for chunk in np.array_split(p, 37):
        acc.add(np.zeros(len(chunk), dtype=np.int64), np.array([0]), chunk[:, None], np.zeros(len(chunk), dtype=np.int64))
    result = acc.result(1)
    assert abs(result["m2"][0, 0] / (len(p) - 1) - p.var(ddof=1)) < 1e-6 * p.var(ddof=1)


# ------------------------------------------------------------------ outputs
def decode_polygon(wkb: bytes) -> list[tuple[float, float]]:
    """The exterior ring of a little-endian WKB Polygon (written here, not by the package)."""
    order, kind, rings = struct.unpack_from("<BII", wkb)
    assert (order, kind, rings) == (1, 3, 1)
    (count,) = struct.unpack_from("<I", wkb, 9)
    values = struct.unpack_from(f"<{2 * count}d", wkb, 13)
    assert len(wkb) == 13 + 16 * count
    return list(zip(values[::2], values[1::2]))


def test_geoparquet_has_valid_metadata_and_cell_polygons(files, tmp_path):
    out = tmp_path / "cells.parquet"
    result = RUNNER.invoke(app, ["aggregate", str(files / "preds.parquet"), "--by", "h3:7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rows into" in result.output and str(out) in result.output
    table = pq.read_table(out)
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert "crs" not in column and column["orientation"] == "counterclockwise"  # absent crs = OGC:CRS84 (lon, lat)
    frame = table.to_pandas()
    xmin, ymin, xmax, ymax = column["bbox"]
    for cell, wkb in zip(frame["h3"], frame["geometry"]):
        ring = decode_polygon(wkb)
        assert ring[0] == ring[-1]
        want = [(lng, lat) for lat, lng in h3.cell_to_boundary(cell)]
        assert np.allclose(sorted(ring[:-1]), sorted(want), rtol=0, atol=1e-12)
        area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:]))
        assert area > 0  # counterclockwise, as declared
        assert all(xmin <= x <= xmax and ymin <= y <= ymax for x, y in ring)
    counts = json.loads(table.schema.metadata[b"clipadapt:aggregate"])
    assert counts["rows_read"] == ROWS and counts["left_out"]["rows with ok=false"] > 0


def test_geojson_and_csv_hold_the_same_rows(files, tmp_path):
    parquet, geojson, csv = tmp_path / "a.parquet", tmp_path / "a.geojson", tmp_path / "a.csv"
    for out in (parquet, geojson, csv):
        result = RUNNER.invoke(app, ["aggregate", str(files / "shards"), "--by", "h3:7", "--out", str(out),
                                     "--attributes", "weather"])
        assert result.exit_code == 0, result.output
    want = pd.read_parquet(parquet).drop(columns="geometry")
    got_csv = pd.read_csv(csv, dtype={"h3": str})
    pd.testing.assert_frame_equal(got_csv, want, check_exact=False, atol=1e-12, rtol=0)
    collection = json.loads(geojson.read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(want)
    first = collection["features"][0]
    assert first["geometry"]["type"] == "Polygon" and first["properties"]["h3"] == want["h3"][0]
    assert first["properties"]["expected_share"] == pytest.approx(want["expected_share"][0], abs=1e-15)


# ------------------------------------------------------------------ bad input
def run_error(*args: str) -> str:
    """The one error line of a failing `clipadapt aggregate *args`."""
    result = RUNNER.invoke(app, ["aggregate", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def write(df: pd.DataFrame, path) -> str:
    df.to_parquet(path, index=False)
    return str(path)


def test_missing_coordinates_name_what_was_looked_for(table, tmp_path):
    path = write(table.drop(columns=["lat"]), tmp_path / "nolat.parquet")
    line = run_error(path, "--by", "h3:8", "--out", str(tmp_path / "o.csv"))
    assert "no latitude column" in line and "lat/latitude" in line and "lon/lng/longitude" in line


def test_coordinate_names_are_matched_loosely(table, tmp_path):
    path = write(table.rename(columns={"lat": "Latitude", "lon": "lng"}), tmp_path / "named.parquet")
    got = aggregate(path, ["h3:7"]).table
    pd.testing.assert_frame_equal(got, aggregate(write(table, tmp_path / "plain.parquet"), ["h3:7"]).table)


def test_swapped_coordinates_are_named(table, tmp_path):
    singapore = table[table["city"] == "singapore"]  # lon 103.8: as a latitude, out of range
    path = write(singapore.rename(columns={"lat": "lon", "lon": "lat"}), tmp_path / "swapped.parquet")
    line = run_error(path, "--by", "h3:8", "--out", str(tmp_path / "o.csv"))
    assert "lat and lon look swapped" in line


@pytest.mark.parametrize("spec", ["h3:16", "h3:-1", "h3:x", "h3:"])
def test_an_h3_resolution_out_of_range(files, tmp_path, spec):
    line = run_error(str(files / "preds.parquet"), "--by", spec, "--out", str(tmp_path / "o.csv"))
    assert "resolution must be a whole number from 0" in line and "15" in line


def test_an_unknown_column_gets_a_suggestion(files, tmp_path):
    line = run_error(str(files / "preds.parquet"), "--by", "citty", "--out", str(tmp_path / "o.csv"))
    assert "no column 'citty'" in line and "Did you mean 'city'?" in line


def test_an_unknown_attribute_gets_a_suggestion(files, tmp_path):
    line = run_error(str(files / "preds.parquet"), "--by", "city", "--attributes", "wether",
                     "--out", str(tmp_path / "o.csv"))
    assert "no attribute 'wether'" in line and "Did you mean 'weather'?" in line


def test_a_table_without_probability_columns(tmp_path):
    path = write(pd.DataFrame({"path": ["a.jpg"], "lat": [1.0], "lon": [2.0], "city": ["x"]}), tmp_path / "t.parquet")
    line = run_error(path, "--by", "city", "--out", str(tmp_path / "o.csv"))
    assert "no probability columns" in line and "clipadapt predict" in line


def test_single_and_multi_label_columns_that_do_not_match(tmp_path):
    single = pd.DataFrame({"ok": [True, True], "city": ["a", "b"], "weather": [0, 1],
                           "weather:p(clear)": [0.2, 0.7], "weather:p(rainy)": [0.8, 0.3]})
    line = run_error(write(single, tmp_path / "s.parquet"), "--by", "city", "--out", str(tmp_path / "o.csv"))
    assert "not one of its classes" in line and "multi-label" in line
    multi = pd.DataFrame({"ok": [True], "city": ["a"], "umbrella": ["yes"], "umbrella:p": [0.7]})
    line = run_error(write(multi, tmp_path / "m.parquet"), "--by", "city", "--out", str(tmp_path / "o.csv"))
    assert "holds text" in line and "multi-label" in line
    both = pd.DataFrame({"ok": [True], "city": ["a"], "w": ["x"], "w:p": [0.7], "w:p(x)": [0.7]})
    line = run_error(write(both, tmp_path / "b.parquet"), "--by", "city", "--out", str(tmp_path / "o.csv"))
    assert "both 'w:p'" in line


def test_a_file_that_is_not_a_table(tmp_path):
    (tmp_path / "notes.parquet").write_text("not parquet at all")
    line = run_error(str(tmp_path / "notes.parquet"), "--by", "city", "--out", str(tmp_path / "o.csv"))
    assert "notes.parquet cannot be read as a Parquet file" in line
    (tmp_path / "notes.txt").write_text("x")
    line = run_error(str(tmp_path / "notes.txt"), "--by", "city", "--out", str(tmp_path / "o.csv"))
    assert "pass a .csv, .parquet or .geoparquet file" in line


@pytest.mark.parametrize("what", ["file", "folder", "glob"])
def test_nothing_to_read(tmp_path, what):
    (tmp_path / "empty").mkdir()
    spec = {"file": tmp_path / "preds.parquett", "folder": tmp_path / "empty", "glob": tmp_path / "none-*.parquet"}[what]
    line = run_error(str(spec), "--by", "city", "--out", str(tmp_path / "o.csv"))
    assert {"file": "does not exist", "folder": "holds no .parquet files", "glob": "matches no .csv"}[what] in line


def test_rows_that_all_fail_are_named_not_written(table, tmp_path):
    path = write(table.assign(ok=False), tmp_path / "failed.parquet")
    line = run_error(path, "--by", "city", "--out", str(tmp_path / "o.csv"))
    assert "no usable rows" in line and f"{ROWS:,} rows with ok=false" in line
    assert not (tmp_path / "o.csv").exists()


def test_missing_h3_package_says_how_to_install(files, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_h3(name, *args, **kwargs):
        if name == "h3" or name.startswith("h3."):
            raise ImportError("No module named 'h3'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h3)
    line = run_error(str(files / "preds.parquet"), "--by", "h3:8", "--out", str(tmp_path / "o.csv"))
    assert "pip install 'clipadapt[geo]'" in line


@pytest.mark.parametrize(("args", "words"), [
    (["--by", "city", "--out", "{tmp}/o.xlsx"], ".geojson or .csv"),
    (["--by", "city", "--out", "{tmp}/o.geojson"], "GeoJSON needs polygons"),
    (["--by", "city", "--out", "{tmp}/o.csv", "--map", "{tmp}/m.html"], "--map draws H3 cells"),
    (["--by", "h3:7", "--out", "{tmp}/o.csv", "--map", "{tmp}/m.png"], "name it .html"),
    (["--by", "city", "--out", "{tmp}/o.csv", "--confidence", "1.5"], "between 0 and 1"),
    (["--by", "city", "--by", "city", "--out", "{tmp}/o.csv"], "each grouping once"),
])
def test_bad_options(files, tmp_path, args, words):
    line = run_error(str(files / "preds.parquet"), *(a.format(tmp=tmp_path) for a in args))
    assert words in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_an_error_mid_stream_keeps_the_old_output(table, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write(table.iloc[:1000], shards / "a.parquet")
    write(table.iloc[1000:].drop(columns=["weather:p(rainy)"]), shards / "b.parquet")
    out = tmp_path / "o.csv"
    out.write_text("an earlier result\n")
    line = run_error(str(shards), "--by", "city", "--out", str(out))
    assert "b.parquet has no column 'weather:p(rainy)'" in line
    assert out.read_text() == "an earlier result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv", "shards"]


def test_the_api_raises_clipadapt_errors(files):
    with pytest.raises(ClipAdaptError, match="Give at least one --by"):
        aggregate(files / "preds.parquet", [])


def test_the_command_imports_no_torch(files, tmp_path):
    """`clipadapt aggregate` is table work: a whole run, map included, in a fresh
    interpreter imports neither torch nor open_clip."""
    import subprocess
    import sys

    probe = ("import sys; from clipadapt.cli.main import app\n"
             "try:\n    app()\nexcept SystemExit as exc:\n    code = exc.code\n"
             "print(code, [m for m in ('torch', 'open_clip', 'sklearn', 'matplotlib') if m in sys.modules])")
    args = ["aggregate", str(files / "preds.parquet"), "--by", "h3:7", "--out", str(tmp_path / "o.parquet"),
            "--map", str(tmp_path / "m.html")]
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout + done.stderr


def test_predicts_own_geoparquet_table_aggregates_as_written(tmp_path):
    """The table `clipadapt predict` writes (its column code, entropy columns, WKB points
    and `geo` metadata) aggregates to the shares of its probabilities."""
    from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
    from clipadapt.predict.columns import probability_table
    from clipadapt.predict.tables import write_table
    from clipadapt.task import TaskSpec

    task = TaskSpec((gss_attribute("weather", GSS_SCHEMA["weather"][1]), gss_attribute("glare", GSS_SCHEMA["glare"][1])))
    rng = np.random.default_rng(5)
    n = 600
    probs = [rng.dirichlet(np.ones(len(a.classes)), n).astype(np.float32) for a in task.attributes]
    ok = rng.random(n) > 0.1
    table = probability_table(task, [f"img/{i}.jpeg" for i in range(n)], probs, ok, ["" if o else "bad" for o in ok])
    table.insert(1, "uuid", [f"u{i}" for i in range(n)])
    table.insert(2, "lat", 1.3 + rng.normal(0, 0.02, n))
    table.insert(3, "lon", 103.8 + rng.normal(0, 0.02, n))
    write_table(table, tmp_path / "preds.parquet", points=True)
    assert b"geo" in pq.read_schema(tmp_path / "preds.parquet").metadata
    got = aggregate(tmp_path / "preds.parquet", ["h3:7"])
    assert set(got.table["attribute"]) == {"weather", "glare"} and got.left_out["rows with ok=false"] == (~ok).sum()
    for attribute, p in zip(task.attributes, probs):
        cls = attribute.classes[0]
        cells = pd.Series([h3.latlng_to_cell(a, b, 7) for a, b in zip(table["lat"], table["lon"])])
        want = pd.Series(p[:, 0].astype(np.float64))[ok].groupby(cells[ok]).mean()
        rows = got.table[(got.table["attribute"] == attribute.name) & (got.table["class"] == cls)].set_index("h3")
        assert np.allclose(rows["expected_share"].sort_index(), want.sort_index(), rtol=0, atol=1e-9)


def test_three_keys_combine_without_overflow():
    """Keys combine one at a time, re-numbered densely: any number of keys and values."""
    from clipadapt.geo.grouping import GroupIndex

    rng = np.random.default_rng(0)
    codes = [rng.integers(0, n, 5000) for n in (50, 3, 4000)]
    values = [[f"k{j}-{v}" for v in range(n)] for j, n in enumerate((50, 3, 4000))]
    index = GroupIndex()
    local, to_global = index.assign(codes, values)
    keys = [index.keys[g] for g in to_global[local]]
    assert keys == [tuple(values[j][codes[j][i]] for j in range(3)) for i in range(5000)]
    assert len(index) == len(set(zip(*(c.tolist() for c in codes))))


def test_the_scale_benchmark_runs_on_a_tiny_size(tmp_path, monkeypatch):
    """benchmarks/aggregate_scale.py keeps working (its figures at this size are noise)."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import aggregate_scale

    out = tmp_path / "scale.json"
    assert aggregate_scale.main(["--sizes", "3000", "--shard-rows", "1000", "--tmp", str(tmp_path),
                                 "--out", str(out)]) == 0
    record = json.loads(out.read_text())["sizes"][0]
    for grouping in ("h3", "column"):
        runs = record[grouping]
        assert runs["max_share_difference"] < 1e-6 and runs["streamed"]["peak_rss_mib"] > 0
        assert runs["streamed"]["groups"] == runs["pandas"]["groups"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scale.json"]  # the shards are gone
