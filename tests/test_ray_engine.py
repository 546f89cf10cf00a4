"""`predict` and `extract` with --engine ray on a local Ray instance (2 CPUs) give what
the local engine gives, written as Parquet shards that a rerun skips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from local_ray import local_ray
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.distributed.shards import PLAN_FILE, claim_folder, make_plan
from clipadapt.errors import ClipAdaptError

RUNNER = CliRunner()


def cli(*args):
    result = RUNNER.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout  # Ray may log to stderr


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    yield from local_ray(tmp_path_factory, "ray[data] is not installed (pip install 'clipadapt[ray]')")


def write_config(folder: Path, cache: Path) -> Path:
    cfg = {
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "synthetic-gss", "root": str(folder / "gss"), "attributes": ["weather"],
                 "synthetic": {"n_train": 30, "n_test": 15, "image_size": 40}},
        "method": {"name": "mhadapter", "params": {"heads": 2}},
        "train": {"epochs": 1, "batch_size": 16, "warmup_epochs": 0, "patience": None},
        "features": {"dir": str(cache), "batch_size": 8},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("ray-run")
    config = write_config(work, work / "cache")
    cli("train", config, "--out", work / "run", "--quiet")
    return work, config


def test_predict_on_ray_equals_local_and_resumes_by_shard(ray_instance, run_folder, tmp_path):
    work, _ = run_folder
    images = work / "gss" / "img"
    local = tmp_path / "local.parquet"
    cli("predict", images, "--checkpoint", work / "run", "--out", local, "--quiet")
    shards = tmp_path / "shards"
    ray_args = ("predict", images, "--checkpoint", work / "run", "--out", shards, "--engine", "ray",
                "--shard-size", "16", "--ray-actors", "1", "--batch-size", "8", "--quiet")
    first = cli(*ray_args)
    expected, got = pd.read_parquet(local), pd.read_parquet(shards)
    files = sorted(shards.glob("part-*.parquet"))
    assert len(files) == int(np.ceil(len(expected) / 16)) and f"({len(files)} computed now" in first
    assert list(got.columns) == list(expected.columns) and list(got["path"]) == list(expected["path"])
    assert (got["weather"] == expected["weather"]).all()
    probs = [c for c in expected.columns if c.startswith("weather:p(")]
    assert np.allclose(got[probs].to_numpy(), expected[probs].to_numpy(), atol=1e-5)

    # an interrupted job: one shard missing; the rerun computes that shard only
    before = {f.name: f.stat().st_mtime_ns for f in files}
    files[1].unlink()
    again = cli(*ray_args)
    assert "1 computed now" in again, again
    after = {f.name: f.stat().st_mtime_ns for f in sorted(shards.glob("part-*.parquet"))}
    assert set(after) == set(before) and after[files[1].name] != before[files[1].name]
    assert all(after[n] == before[n] for n in before if n != files[1].name)
    pd.testing.assert_frame_equal(pd.read_parquet(shards), got)


def test_extract_on_ray_fills_the_same_store_entries_as_local(ray_instance, run_folder, tmp_path):
    work, config = run_folder
    ray_cache, local_cache = tmp_path / "ray-cache", tmp_path / "local-cache"
    out = cli("extract", config, "--set", f"features.dir={ray_cache}", "--set", "features.train_views=2",
              "--engine", "ray", "--shard-size", "16", "--ray-actors", "1", "--quiet")
    ray_done = json.loads(out)
    out = cli("extract", config, "--set", f"features.dir={local_cache}", "--set", "features.train_views=2", "--quiet")
    local_done = json.loads(out)
    assert {k: v["key"] for k, v in ray_done.items()} == {k: v["key"] for k, v in local_done.items()}
    assert ray_done["train"]["views"] == 2
    for split, entry in local_done.items():
        key = entry["key"]
        assert (Path(ray_done[split]["shards"]) / PLAN_FILE).is_file()
        for name in ("embeds.npy", "tokens.npy"):
            a, b = np.load(ray_cache / key / name), np.load(local_cache / key / name)
            assert a.shape == b.shape and np.allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3), name
        assert np.load(ray_cache / key / "done.npy").all()


def test_a_shard_folder_of_another_job_is_refused(tmp_path):
    claim_folder(tmp_path / "out", make_plan("predict", 10, 4, ["a.jpg"]))
    claim_folder(tmp_path / "out", make_plan("predict", 10, 4, ["a.jpg"]))  # same job: resumes
    with pytest.raises(ClipAdaptError, match="holds shards of another job"):
        claim_folder(tmp_path / "out", make_plan("predict", 10, 4, ["b.jpg"]))


def test_ray_options_without_the_ray_engine_are_refused(run_folder, tmp_path):
    work, _ = run_folder
    result = RUNNER.invoke(app, ["predict", str(work / "gss" / "img"), "--checkpoint", str(work / "run"),
                                 "--out", str(tmp_path / "p.csv"), "--ray-address", "auto", "--quiet"])
    assert result.exit_code == 2 and "need --engine ray" in result.output


def test_ray_predict_into_a_csv_name_is_refused(run_folder, tmp_path):
    work, _ = run_folder
    result = RUNNER.invoke(app, ["predict", str(work / "gss" / "img"), "--checkpoint", str(work / "run"),
                                 "--out", str(tmp_path / "p.csv"), "--engine", "ray", "--quiet"])
    assert result.exit_code == 2 and "give --out FOLDER" in result.output



def test_a_worker_error_comes_back_as_the_shard_error_not_a_traceback():
    from clipadapt.distributed.ray_runtime import shard_summaries

    def work(row):
        if row.shard == 1:
            raise ClipAdaptError("Unreadable image: b.jpg: truncated. Replace the file or remove the row.")
        return 4

    table = shard_summaries(pd.DataFrame({"shard": [0, 1]}), work)
    assert table.to_dict("records") == [
        {"shard": 0, "rows": 4, "error": ""},
        {"shard": 1, "rows": 0, "error": "Unreadable image: b.jpg: truncated. Replace the file or remove the row."}]


def test_int8_on_ray_asks_for_cpu_actors_even_on_a_gpu_cluster(monkeypatch, tmp_path):
    # int8 runs on the CPU only; actors holding a GPU would each stop with that error.
    import clipadapt.distributed.ray_predict as ray_predict
    from clipadapt.distributed.ray_runtime import RayOptions, pool_shape
    from clipadapt.workflow.predict import predict_on_ray

    asked = {}

    def fake_predict_with_ray(checkpoint, paths, out, options, **kwargs):
        asked[kwargs["precision"]] = options
        return {"rows": 0, "shards": 0, "computed_shards": 0, "unreadable": 0}

    monkeypatch.setattr(ray_predict, "predict_with_ray", fake_predict_with_ray)
    for precision in ("fp32", "int8"):
        predict_on_ray(tmp_path / "run", [], tmp_path / "out", RayOptions(), 100, False,
                       {"batch_size": 8, "num_workers": 0, "threshold": 0.5, "precision": precision})
    assert asked["fp32"].gpus_per_actor is None and asked["int8"].gpus_per_actor == 0.0

    class GpuCluster:
        @staticmethod
        def cluster_resources():
            return {"CPU": 8.0, "GPU": 2.0}

    assert pool_shape(GpuCluster, asked["fp32"]) == (2, 1.0, 1.0)  # one actor per GPU
    assert pool_shape(GpuCluster, asked["int8"]) == (8, 1.0, 0.0)  # one per CPU, no GPU
