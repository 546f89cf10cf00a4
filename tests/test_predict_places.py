"""Predictions keep their place: `predict` on a manifest carries its uuid and lat/lon (or
what --keep names) right after `path`, in the manifest's order; --metadata joins
coordinates by uuid; Parquet output with coordinates is GeoParquet; every single-label
attribute has its normalised entropy; bad --keep / --metadata / coordinates are answered
clearly and leave nothing written."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from clipadapt.cli.main import app

UUIDS = ["c3", "a1", "f6", "b2", "e5", "d4"]  # the manifest's order, not the file names' order
LATS = [1.3521, 51.5072, -33.8688, 40.7128, 35.6762, -22.9068]
LONS = [103.8198, -0.1276, 151.2093, -74.006, 139.6503, -43.1729]


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def place(tmp_path_factory, micro_backbone):
    """A run folder (untrained micro CLIP, weather + pano_status) and six GSS-style images,
    img/<n>/<uuid>.jpeg, listed by a manifest with uuid, lat, lon and city."""
    from test_report_support import make_run

    base = tmp_path_factory.mktemp("places")
    run = make_run(base / "run", micro_backbone, evaluated=False)
    rng = np.random.default_rng(0)
    for i, uuid in enumerate(UUIDS):
        (base / "img" / str(i % 2 + 1)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(base / "img" / str(i % 2 + 1) / f"{uuid}.jpeg")
    manifest = pd.DataFrame({"uuid": UUIDS, "img_path": [f"img/{i % 2 + 1}/{u}.jpeg" for i, u in enumerate(UUIDS)],
                             "lat": LATS, "lon": LONS, "city": ["sg", "lon", "syd", "nyc", "tyo", "rio"]})
    manifest.to_csv(base / "manifest.csv", index=False)
    return base, run


def predict(base: Path, run: Path, *args, out: str = "preds.csv"):
    result = cli("predict", *args, "--checkpoint", run, "--out", base / out, "--quiet")
    return result, base / out


def test_a_manifests_uuid_and_coordinates_follow_path_in_its_order(place):
    base, run = place
    result, out = predict(base, run, base / "manifest.csv")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns[:6]) == ["path", "uuid", "lat", "lon", "ok", "error"]
    assert "city" not in table.columns  # carried only when asked for
    assert table["uuid"].tolist() == UUIDS and [Path(p).stem for p in table["path"]] == UUIDS
    assert np.allclose(table["lat"], LATS) and np.allclose(table["lon"], LONS)


def test_keep_chooses_the_columns_and_their_order(place):
    base, run = place
    result, out = predict(base, run, base / "manifest.csv", "--keep", "city,latitude,uuid")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns[:5]) == ["path", "city", "lat", "uuid", "ok"]  # 'latitude' is the lat column
    assert table["city"].tolist() == ["sg", "lon", "syd", "nyc", "tyo", "rio"]
    assert list(pd.read_csv(predict(base, run, base / "manifest.csv", "--keep", "all")[1]).columns[:6]) == [
        "path", "uuid", "lat", "lon", "city", "ok"]
    assert list(pd.read_csv(predict(base, run, base / "manifest.csv", "--keep", "none")[1]).columns[:2]) == ["path", "ok"]
    # a GSS label file's `weather` (the true label) does not overwrite the predicted one
    pd.read_csv(base / "manifest.csv").assign(weather="clear").to_csv(base / "labelled.csv", index=False)
    table = pd.read_csv(predict(base, run, base / "labelled.csv", "--keep", "uuid,weather")[1])
    assert list(table.columns[:4]) == ["path", "uuid", "weather:input", "ok"] and "weather" in table.columns


def test_entropy_is_the_normalised_entropy_of_each_attributes_probabilities(place):
    base, run = place
    table = pd.read_csv(predict(base, run, base / "manifest.csv")[1])
    for attribute in ("weather", "pano_status"):
        block = [c for c in table.columns if c.startswith(f"{attribute}:")]
        assert block[-1] == f"{attribute}:entropy"  # closes the attribute's block
        p = table[block[:-1]].to_numpy(float)
        direct = -(p * np.log(np.where(p > 0, p, 1))).sum(1) / np.log(p.shape[1])
        entropy = table[f"{attribute}:entropy"].to_numpy(float)
        assert np.allclose(entropy, direct, atol=1e-5) and ((entropy >= 0) & (entropy <= 1)).all()


def test_parquet_with_coordinates_is_geoparquet(place):
    base, run = place
    frame = pd.read_csv(base / "manifest.csv")
    frame.loc[2, ["lat", "lon"]] = np.nan  # no coordinates: a null geometry
    frame.to_csv(base / "gaps.csv", index=False)
    result, out = predict(base, run, base / "gaps.csv", out="preds.parquet")
    assert result.exit_code == 0, result.output
    assert "1 row without coordinates" in result.output and "as GeoParquet" in result.output
    geo = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Point"] and "crs" not in column  # = OGC:CRS84
    lats, lons = np.delete(LATS, 2), np.delete(LONS, 2)
    assert column["bbox"] == pytest.approx([lons.min(), lats.min(), lons.max(), lats.max()])
    table = pq.read_table(out)
    assert str(table.schema.field("geometry").type) == "binary" and table.schema.field("geometry").nullable
    geometry = table.column("geometry").to_pylist()
    assert geometry[2] is None
    for wkb, lat, lon in zip(geometry[:2] + geometry[3:], lats, lons):
        assert struct.unpack("<BIdd", wkb) == (1, 1, lon, lat)  # little endian, Point, x = lon, y = lat
    assert pd.read_parquet(out)["uuid"].tolist() == UUIDS


def test_metadata_joins_coordinates_by_uuid(place):
    base, run = place
    pd.read_csv(base / "manifest.csv").drop(columns=["lat", "lon"]).to_csv(base / "no_coords.csv", index=False)
    # GSS-like metadata: other columns, other order, one image's uuid missing, one extra uuid
    meta = pd.DataFrame({"source": "Mapillary", "uuid": UUIDS[1:][::-1] + ["zz"], "lon": LONS[1:][::-1] + [0.0],
                         "lat": LATS[1:][::-1] + [0.0]})
    meta.to_parquet(base / "meta.parquet")
    result, out = predict(base, run, base / "no_coords.csv", "--metadata", base / "meta.parquet")
    assert result.exit_code == 0, result.output
    assert "coordinates of 5 of 6 rows joined" in result.output and "1 row with a uuid not in it" in result.output
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["path", "uuid", "lat", "lon"] and table["uuid"].tolist() == UUIDS
    assert np.allclose(table["lat"][1:], LATS[1:]) and np.isnan(table["lat"][0])  # UUIDS[0] is not in it

    # a folder of GSS images: the uuid is the file name's stem
    result, out = predict(base, run, base / "img", "--metadata", base / "meta.parquet", out="folder.csv")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out).set_index("uuid")
    assert np.allclose(table.loc[UUIDS[1:], "lat"], LATS[1:]) and np.isnan(table.loc[UUIDS[0], "lat"])


def test_bad_keep_and_metadata_are_clear_errors_and_write_nothing(place):
    base, run = place
    result, out = predict(base, run, base / "manifest.csv", "--keep", "citty", out="bad.csv")
    assert result.exit_code == 2 and "--keep citty" in result.output and "Did you mean 'city'?" in result.output
    pd.DataFrame({"id_": ["a1"], "lat": [1.0], "lon": [2.0]}).to_csv(base / "no_uuid.csv", index=False)
    result, out = predict(base, run, base / "img", "--metadata", base / "no_uuid.csv", out="bad.csv")
    assert result.exit_code == 2 and "no 'uuid' column" in " ".join(result.output.split())
    pd.DataFrame({"uuid": ["a1", "b2", "a1"], "lat": [1, 2, 3], "lon": [1, 2, 3]}).to_csv(base / "twice.csv", index=False)
    result, out = predict(base, run, base / "img", "--metadata", base / "twice.csv", out="bad.csv")
    assert result.exit_code == 2 and "lists uuid a1 2 times" in " ".join(result.output.split())
    assert not out.exists() and not list(base.glob(".bad.csv*"))


def test_out_of_range_coordinates_are_kept_counted_and_warned(place):
    base, run = place
    frame = pd.read_csv(base / "manifest.csv")
    frame.loc[1, "lat"], frame.loc[4, "lon"] = 123.0, -200.0
    frame.to_csv(base / "wrong.csv", index=False)
    result, out = predict(base, run, base / "wrong.csv", out="wrong.parquet")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "2 rows with coordinates out of range (lat 123, lon -0.1276" in said
    table = pd.read_parquet(out)
    assert table["lat"][1] == 123.0 and table["lon"][4] == -200.0  # as given
    assert table["geometry"][1] is None and table["geometry"][4] is None


def test_a_ray_shard_carries_its_slice_of_the_columns_as_geoparquet(place, tmp_path):
    # the actor's work, without starting Ray: tests/test_ray_engine.py runs the real pool
    from types import SimpleNamespace

    from clipadapt.distributed.ray_predict import ShardPredictor, pack_frame
    from clipadapt.predict.places import carried_columns, collect_inputs

    base, run = place
    paths, inputs = collect_inputs([str(base / "manifest.csv")])
    places = carried_columns(paths, inputs, "uuid,lat,lon,city")
    actor = ShardPredictor(str(run), str(tmp_path), 4, 0, 0.5, {}, points=True)
    row = SimpleNamespace(shard=1, start=2, stop=5, paths=[str(p) for p in paths[2:5]],
                          carried=pack_frame(places.columns.iloc[2:5]))
    assert actor.predict_shard(row) == 3
    shard = tmp_path / "part-000001.parquet"
    table = pd.read_parquet(shard)
    assert list(table.columns[:6]) == ["path", "uuid", "lat", "lon", "city", "ok"] and table.columns[-1] == "geometry"
    assert table["uuid"].tolist() == UUIDS[2:5] and np.allclose(table["lat"], LATS[2:5])
    assert json.loads(pq.read_schema(shard).metadata[b"geo"])["columns"]["geometry"]["encoding"] == "WKB"


def test_a_gss_label_file_predicts_with_its_uuid_and_coordinates(place, tmp_path):
    # root/test/<attribute>.csv lists img_path relative to root, one folder above the CSV
    from clipadapt.synthetic.streets import write_gss_dataset

    base, run = place
    root = write_gss_dataset(tmp_path / "gss", n_train=6, n_test=6, image_size=32)
    labels = pd.read_csv(root / "test" / "weather.csv", dtype=str)
    result, out = predict(base, run, root / "test" / "weather.csv", "--keep", "all", out="gss.parquet")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert table["ok"].all() and table["uuid"].tolist() == labels["uuid"].tolist()
    assert list(table.columns[:7]) == ["path", "uuid", "source", "lat", "lon", "weather:input", "ok"]
    assert np.allclose(table["lat"], labels["lat"].astype(float)) and table["geometry"].notna().all()
