"""One answer per track (issue 31, part 5): pooling a track's frames (mean of probabilities,
or of log-odds), unusable frames left out, decisions at the per-image thresholds; and on
synthetic tracks the pooled answer beats single frames (mA per track vs per frame)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import clipadapt
from clipadapt.errors import ClipAdaptError
from clipadapt.metrics.multilabel import par_metrics
from clipadapt.predict.columns import probability_table
from clipadapt.predict.tracks import pool_tracks, track_scores, tracks_path
from clipadapt.synthetic.pedestrian_frames import write_pedestrian_frames
from clipadapt.synthetic.pedestrians import PEDESTRIAN_ATTRIBUTES, write_par_dataset
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec

TWO = TaskSpec((Attribute("hat", BINARY_CLASSES), Attribute("bag", BINARY_CLASSES)), multilabel=True)


def _table(task: TaskSpec, yes: list[list[float]], ok: list[bool]) -> pd.DataFrame:
    probs = [np.stack([1 - np.array(col), np.array(col)], 1) for col in np.array(yes, np.float32).T]
    return probability_table(task, [f"f{i}.png" for i in range(len(ok))], probs, np.array(ok), [""] * len(ok))


def test_a_track_pools_its_usable_frames_and_decides_at_each_attributes_threshold():
    yes = [[0.9, 0.2], [0.2, 0.6], [0.8, 0.7], [np.nan, np.nan], [0.3, 0.1], [0.4, 0.9]]
    table = _table(TWO, yes, [True, True, True, False, True, True])
    tracks = ["7", "7", "7", "7", "", "b"]  # row 4 belongs to no track
    pooled = pool_tracks(table, TWO, [0.5, 0.55], tracks)
    assert list(pooled["track"]) == ["7", "b"] and list(pooled["frames"]) == [3, 1]
    assert pooled["hat:p"].iloc[0] == pytest.approx((0.9 + 0.2 + 0.8) / 3, abs=1e-6)
    assert pooled["bag:p"].iloc[0] == pytest.approx(0.5, abs=1e-6)
    assert list(pooled["hat"]) == [1, 0] and list(pooled["bag"]) == [0, 1]  # 0.5 is not over 0.55
    logit = pool_tracks(table, TWO, 0.5, tracks, pooling="logit")
    z = np.log(np.array([0.9, 0.2, 0.8]) / (1 - np.array([0.9, 0.2, 0.8]))).mean()
    assert logit["hat:p"].iloc[0] == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-6)


def test_a_track_without_a_usable_frame_stays_empty_and_bad_input_is_named():
    table = _table(TWO, [[np.nan, np.nan], [0.9, 0.9]], [False, True])
    pooled = pool_tracks(table, TWO, 0.5, ["a", "b"])
    assert list(pooled["ok"]) == [False, True] and pooled["hat"].iloc[0] == -1 and np.isnan(pooled["hat:p"].iloc[0])
    with pytest.raises(ClipAdaptError, match="'track' column"):
        pool_tracks(table, TWO, 0.5)
    with pytest.raises(ClipAdaptError, match="pooling must be"):
        pool_tracks(table, TWO, 0.5, ["a", "b"], pooling="median")
    assert tracks_path("out/pred.parquet").name == "pred.tracks.parquet"


def test_single_label_tracks_pool_every_class():
    task = TaskSpec((Attribute("weather", ("rain", "sun", "snow")),))
    probs = [np.array([[0.6, 0.3, 0.1], [0.1, 0.5, 0.4], [0.2, 0.7, 0.1]], np.float32)]
    table = probability_table(task, ["a", "b", "c"], probs, np.ones(3, bool), [""] * 3)
    pooled = pool_tracks(table, task, 0.5, ["t", "t", "t"])
    assert pooled["weather"].iloc[0] == "sun"
    assert pooled[[f"weather:p({c})" for c in ("rain", "sun", "snow")]].sum(axis=1).iloc[0] == pytest.approx(1.0)
    assert 0 < pooled["weather:entropy"].iloc[0] < 1


@pytest.fixture(scope="module")
def probe_on_tracks(tmp_path_factory):
    """A linear probe on the tiny CLIP trained on rendered crops, tested on the crops of 90
    synthetic tracks of 6 frames each (40% of (person, frame) pairs hard); and its
    per-image table of the same tracks read as boxes in their frames."""
    base = tmp_path_factory.mktemp("tracks")
    frames = write_pedestrian_frames(base / "frames", n_clips=30, seed=1, test_fraction=1.0)
    par = write_par_dataset(base / "par", n_train=600, n_test=50, image_size=96)
    config = {"data": {"format": "manifest", "task": "multilabel", "train_manifest": str(par / "train.csv"),
                       "test_manifest": str(frames / "crops.csv"), "attribute_file": str(par / "attributes.json"),
                       "val_fraction": 0.0},
              "backbone": {"preprocess": "letterbox"}, "method": {"name": "linear_probe"},
              "features": {"dir": str(base / "cache")}}
    run = clipadapt.train(config, base / "run", {"train.epochs": 60, "train.lr": 0.05, "train.weight_decay": 0.0},
                          device="cpu")
    return run, frames, run.predict(str(frames / "frames.csv"))


def test_pooling_a_track_beats_its_single_frames(probe_on_tracks):
    run, frames, table = probe_on_tracks
    truth = pd.read_csv(frames / "frames.csv", keep_default_na=False)
    names = list(PEDESTRIAN_ATTRIBUTES)
    cut = table.attrs["threshold"]
    per_frame = par_metrics(truth[names].to_numpy(), table[[f"{a}:p" for a in names]].to_numpy(), cut)["mA"]
    per_track_truth = truth.groupby("track", sort=False)[names].first().to_numpy()
    scores = {}
    for pooling in ("probability", "logit"):
        pooled = pool_tracks(table, run.task, cut, pooling=pooling)
        assert (pooled["frames"] == 6).all() and len(pooled) == len(per_track_truth) == 90
        scores[pooling] = par_metrics(per_track_truth, pooled[[f"{a}:p" for a in names]].to_numpy(), cut)["mA"]
    print(f"mA per frame {per_frame:.4f}, per track: mean of probabilities {scores['probability']:.4f}, "
          f"mean of logits {scores['logit']:.4f}")
    assert per_frame > 0.53  # the probe learnt something: chance is 0.5
    assert scores["probability"] > per_frame + 0.01
    assert scores["logit"] > per_frame
    # the Python API's per-track table is the same pooling of the same rows
    api = run.predict_tracks(str(frames / "frames.csv"))
    assert np.allclose(api[[f"{a}:p" for a in names]], pool_tracks(table, run.task, cut)[[f"{a}:p" for a in names]])


def test_evaluation_scores_a_test_manifest_with_tracks_per_track_too(probe_on_tracks):
    run, _, table = probe_on_tracks
    scores = json.loads((run.path / "metrics.json").read_text())["tracks"]
    print(f"metrics.json tracks: mA {scores['mA']:.4f}, frame_mA {scores['frame_mA']:.4f}")
    assert (scores["tracks"], scores["frames"], scores["pooling"]) == (90, 540, "probability")
    assert scores["mA"] > scores["frame_mA"] + 0.01
    assert len(scores["multilabel"]["per_attribute"]) == len(PEDESTRIAN_ATTRIBUTES)
    # the test crops are the boxes predict cuts from the frames: one per-frame score
    truth = pd.read_csv(run.path.parent / "frames/frames.csv", keep_default_na=False)
    names = list(PEDESTRIAN_ATTRIBUTES)
    by_boxes = par_metrics(truth[names].to_numpy(), table[[f"{a}:p" for a in names]].to_numpy(),
                           table.attrs["threshold"])["mA"]
    assert scores["frame_mA"] == pytest.approx(by_boxes, abs=0.01)


def test_rows_of_one_track_must_agree_on_their_labels():
    labels = np.array([[1, 0], [0, 0], [1, 1]])
    probs = [np.full((3, 2), 0.5), np.full((3, 2), 0.5)]
    with pytest.raises(ClipAdaptError, match="Track .a. has rows labelled differently for .hat. \\(0 and 1\\)"):
        track_scores(labels, probs, ["a", "a", "b"], TWO)
    scored = track_scores(np.array([[1, 0], [1, -1], [0, 1]]), probs, ["a", "a", ""], TWO)
    assert (scored["tracks"], scored["frames"]) == (1, 2)


def test_single_label_tracks_are_scored_by_accuracy():
    task = TaskSpec((Attribute("weather", ("rain", "sun")),))
    # track a: frames 1 and 2 wrong alone, right pooled; track b: right
    probs = [np.array([[0.4, 0.6], [0.45, 0.55], [0.95, 0.05], [0.2, 0.8]])]
    scored = track_scores(np.array([[0], [0], [0], [1]]), probs, ["a", "a", "a", "b"], task)
    assert scored["accuracy"] == 1.0 and scored["frame_accuracy"] == 0.5
