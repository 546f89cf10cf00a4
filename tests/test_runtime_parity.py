"""`python -m clipadapt.runtime` against `clipadapt predict --model`: with torch blocked, the
runtime command writes the same tables as predict does with the same exported file: a
manifest's uuid and coordinates carried (CSV, and GeoParquet for .parquet), --keep,
--metadata joined by uuid, boxes cut from their frames and the per-track table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.runtime.__main__ import main as runtime_main
from test_onnx_export import BLOCK_TORCH  # the import hook that blocks torch, open_clip and timm

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

UUIDS = ["k7", "b2", "q9", "a1"]
LATS = [48.8566, -33.8688, 1.3521, 40.7128]
LONS = [2.3522, 151.2093, 103.8198, -74.006]
# case -> (inputs, extra options, OUT's name); both commands run each one
CASES = {
    "places": (["places.csv"], [], "places.csv"),
    "geoparquet": (["places.csv"], [], "places.parquet"),
    "keep": (["places.csv"], ["--keep", "city,uuid"], "keep.csv"),
    "metadata": (["ids.csv"], ["--metadata", "metadata.csv"], "metadata.csv"),
    "boxes": (["frames/frames.csv"], [], "frames.csv"),
}


@pytest.fixture(scope="module")
def scene(tmp_path_factory, micro_backbone):
    """An exported linear probe on the micro CLIP (random head: each image its own
    probabilities), four images listed with uuid / lat / lon / city, a uuid-only manifest
    with a metadata table, and rendered frames with boxes and tracks."""
    from test_report_support import make_run

    from clipadapt.export import export_run
    from clipadapt.synthetic.pedestrian_frames import write_pedestrian_frames

    base = tmp_path_factory.mktemp("runtime_parity")
    model = export_run(make_run(base / "run", micro_backbone, "linear_probe", evaluated=False),
                       base / "model.onnx").path
    rng = np.random.default_rng(3)
    (base / "img").mkdir()
    for uuid in UUIDS:
        Image.fromarray(rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)).save(base / "img" / f"{uuid}.png")
    paths = [f"img/{u}.png" for u in UUIDS]
    pd.DataFrame({"uuid": UUIDS, "path": paths, "lat": LATS, "lon": LONS,
                  "city": ["par", "syd", "sg", "nyc"]}).to_csv(base / "places.csv", index=False)
    pd.DataFrame({"uuid": UUIDS, "path": paths}).to_csv(base / "ids.csv", index=False)
    pd.DataFrame({"uuid": UUIDS[::-1] + ["zz"], "lat": LATS[::-1] + [0.0],
                  "lon": LONS[::-1] + [0.0]}).to_csv(base / "metadata.csv", index=False)
    write_pedestrian_frames(base / "frames", n_clips=2, frames_per_clip=2, people_per_clip=2, seed=5)
    return base, model


def _args(base: Path, model: Path, case: str, folder: str) -> list[str]:
    inputs, extra, out = CASES[case]
    return [*(str(base / i) for i in inputs), "--model", str(model), "--out", str(base / folder / out),
            *(str(base / e) if e.endswith(".csv") else e for e in extra)]


@pytest.fixture(scope="module")
def runtime(scene):
    """Every case, and one bad --keep, through `clipadapt.runtime`'s main in one Python with
    torch, torchvision, open_clip and timm blocked: {case: exit code}, stdout, stderr."""
    base, model = scene
    (base / "runtime").mkdir()
    calls = {case: _args(base, model, case, "runtime") for case in CASES}
    calls["bad_keep"] = [str(base / "places.csv"), "--model", str(model), "--out", str(base / "runtime" / "bad.csv"),
                         "--keep", "uuid,citty"]
    script = BLOCK_TORCH + (
        "import json\n"
        "from clipadapt.runtime.__main__ import main\n"
        f"codes = {{case: main(argv) for case, argv in {calls!r}.items()}}\n"
        "assert not any(m.split('.')[0] in ('torch', 'torchvision', 'open_clip', 'timm') for m in sys.modules), "
        "'torch was imported'\n"
        "print('CODES ' + json.dumps(codes))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.rsplit("CODES ", 1)[1])
    return codes, done.stdout, done.stderr


@pytest.fixture(scope="module")
def predicted(scene):
    """Every case through `clipadapt predict --model` (the CLI, in this process)."""
    base, model = scene
    (base / "cli").mkdir()
    for case in CASES:
        result = CliRunner().invoke(app, ["predict", *_args(base, model, case, "cli"), "--quiet"])
        assert result.exit_code == 0, (case, result.output)
    return base / "cli"


def same_table(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Same columns in the same order, same rows, equal values (floats within 1e-6)."""
    assert list(ours.columns) == list(theirs.columns)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=0, atol=1e-6)


def test_the_runtime_carries_a_manifests_uuid_and_coordinates_as_predict_does(scene, runtime, predicted):
    base, _ = scene
    codes, stdout, _ = runtime
    assert codes["places"] == 0
    ours, theirs = pd.read_csv(base / "runtime" / "places.csv"), pd.read_csv(predicted / "places.csv")
    same_table(ours, theirs)
    assert list(ours.columns[:6]) == ["path", "uuid", "lat", "lon", "ok", "error"] and "city" not in ours.columns
    assert ours["uuid"].tolist() == UUIDS and np.allclose(ours["lat"], LATS) and np.allclose(ours["lon"], LONS)
    assert ours["ok"].all()
    # a random head: every image has its own probabilities, so a row out of place would show
    probs = ours[[c for c in ours.columns if ":p(" in c]].to_numpy()
    assert np.abs(np.diff(probs, axis=0)).max() > 1e-4
    assert f"wrote 4 rows to {base / 'runtime' / 'places.csv'} (onnxruntime, fp32); 0 of 4 images skipped" in stdout


def test_parquet_with_coordinates_is_the_same_geoparquet(scene, runtime, predicted):
    base, _ = scene
    codes, stdout, _ = runtime
    assert codes["geoparquet"] == 0 and "as GeoParquet" in stdout
    ours, theirs = base / "runtime" / "places.parquet", predicted / "places.parquet"
    same_table(pd.read_parquet(ours), pd.read_parquet(theirs))
    geo = pq.read_schema(ours).metadata[b"geo"]
    assert geo == pq.read_schema(theirs).metadata[b"geo"]
    assert json.loads(geo)["primary_column"] in pd.read_parquet(ours).columns


def test_keep_and_metadata_mean_what_they_mean_for_predict(scene, runtime, predicted):
    base, _ = scene
    codes, _, _ = runtime
    assert codes["keep"] == codes["metadata"] == 0
    kept = pd.read_csv(base / "runtime" / "keep.csv")
    same_table(kept, pd.read_csv(predicted / "keep.csv"))
    assert list(kept.columns[:3]) == ["path", "city", "uuid"] and "lat" not in kept.columns
    joined = pd.read_csv(base / "runtime" / "metadata.csv")
    same_table(joined, pd.read_csv(predicted / "metadata.csv"))
    assert np.allclose(joined["lat"], LATS) and np.allclose(joined["lon"], LONS)  # matched by uuid, not by row


def test_boxes_are_cut_and_tracks_pooled_as_predict_does(scene, runtime, predicted):
    base, _ = scene
    codes, stdout, _ = runtime
    assert codes["boxes"] == 0
    ours = pd.read_csv(base / "runtime" / "frames.csv")
    same_table(ours, pd.read_csv(predicted / "frames.csv"))
    assert list(ours.columns[1:6]) == ["x", "y", "w", "h", "track"] and len(ours) == 8 and ours["ok"].all()
    # two people share each frame: their rows differ, so the box (not the frame) was read
    probs = ours[[c for c in ours.columns if ":p(" in c]].to_numpy()
    assert np.abs(probs[0] - probs[1]).max() > 1e-4
    tracks = pd.read_csv(base / "runtime" / "frames.tracks.csv")
    same_table(tracks, pd.read_csv(predicted / "frames.tracks.csv"))
    assert list(tracks["track"]) == [0, 1, 2, 3] and (tracks["frames"] == 2).all()
    assert "wrote 4 tracks" in stdout


def test_bad_input_is_one_error_line_and_writes_nothing(scene, runtime, capsys):
    base, model = scene
    codes, _, stderr = runtime
    assert codes["bad_keep"] == 2
    line = next(li for li in stderr.splitlines() if li.startswith("error: "))
    assert "citty" in line and "city" in line.replace("citty", "")  # names the column, suggests the right one
    assert not (base / "runtime" / "bad.csv").exists()
    with pytest.raises(SystemExit) as stopped:  # argparse: exit 2 with the option and the reason
        runtime_main([str(base / "places.csv"), "--model", str(model), "--batch-size", "0"])
    assert stopped.value.code == 2 and "--batch-size: 0 is below 1" in capsys.readouterr().err
