"""One answer per track: a prediction table's rows pooled by their `track` (one object a
tracker followed through several frames), so a person seen in 40 frames gets one row.

Pooling is the mean of the frames' probabilities (per attribute, over the track's usable
frames). The other choice, the mean of log-odds (a softmax of the mean log-probabilities;
for a multi-label attribute exactly sigmoid(mean logit)), is kept as `pooling="logit"` to
compare. On the synthetic tracks (synthetic/pedestrian_frames.py; 3 seeds x 90 tracks, a
linear probe on the tiny CLIP) single frames scored mA 59.5%, tracks 61.0% pooled by the
mean of probabilities and 60.3% by the mean of logits; the mean of probabilities led in
every seed (docs/data.md). It is also the safer rule: one frame can move it by at most
1/F, while a frame that is confidently wrong (the legs hidden behind a car read as "no
skirt" at p = 0.001) has a log-odds of -7 and drags a mean of logits much further than
the evidence of one frame in 40 should.

Decisions come from `predict.columns.prediction_columns` at the threshold the per-image
table used, so a track's columns read as an image's do. Free of torch: any engine's table
(torch, ONNX) can be pooled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clipadapt.data.boxes import TRACK_COLUMN
from clipadapt.errors import ClipAdaptError
from clipadapt.predict.columns import prediction_columns
from clipadapt.task import TaskSpec

POOLINGS = ("probability", "logit")
# probabilities are float32: an exact 0 or 1 would make a log-odds infinite
_CLIP = 1e-7


def table_probabilities(task: TaskSpec, table: pd.DataFrame) -> list[np.ndarray]:
    """Per attribute the [N, K] class probabilities held in a prediction table's columns
    (`a:p` for a multi-label attribute, `a:p(<class>)` for each class otherwise)."""
    found = []
    for attr in task.attributes:
        if task.multilabel:
            yes = table[f"{attr.name}:p"].to_numpy(np.float64)
            found.append(np.stack([1 - yes, yes], axis=1))
        else:
            found.append(np.stack([table[f"{attr.name}:p({c})"].to_numpy(np.float64) for c in attr.classes], axis=1))
    return found


def track_codes(tracks) -> tuple[np.ndarray, list[str]]:
    """Each row's track number (-1: in no track, an empty or missing id) and the track ids,
    numbered in the order they first appear."""
    ids = pd.Series(list(tracks), dtype="string").str.strip()
    named = (ids.notna() & (ids != "")).to_numpy()
    codes = np.full(len(ids), -1, dtype=np.int64)
    found, order = pd.factorize(ids[named], sort=False)
    codes[named] = found
    return codes, [str(t) for t in order]


def pooled_by_track(probs: list[np.ndarray], codes: np.ndarray, count: int, use: np.ndarray | None = None,
                    pooling: str = "probability") -> tuple[list[np.ndarray], np.ndarray]:
    """Per attribute the [count, K] pooled class probabilities of the rows numbered by
    `codes` (`track_codes`), only rows with `use` (default all); NaN for a track without
    such a row. Also each track's number of rows pooled. One pass per class (bincount),
    so a million rows in a hundred thousand tracks cost what the rows do."""
    if pooling not in POOLINGS:
        raise ClipAdaptError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    use = (codes >= 0) if use is None else (np.asarray(use, bool) & (codes >= 0))
    rows = codes[use]
    frames = np.bincount(rows, minlength=count)
    pooled = []
    for p in probs:
        values = np.asarray(p, np.float64)[use]
        if pooling == "logit":
            values = np.log(np.clip(values, _CLIP, 1.0))
        sums = np.stack([np.bincount(rows, weights=values[:, k], minlength=count) for k in range(values.shape[1])], 1)
        with np.errstate(invalid="ignore", divide="ignore"):  # a track without a usable row: 0 / 0 = NaN
            mean = sums / frames[:, None]
            if pooling == "logit":  # softmax of the mean log-probabilities
                mean = np.exp(mean - mean.max(axis=1, keepdims=True))
                mean /= mean.sum(axis=1, keepdims=True)
        pooled.append(mean)
    return pooled, frames


def pool_tracks(table: pd.DataFrame, task: TaskSpec, threshold=0.5, tracks=None,
                pooling: str = "probability") -> pd.DataFrame:
    """One row per track of a prediction table (`clipadapt predict`'s or `Run.predict`'s):
    `track`, `frames` (its usable rows, the ones pooled), `ok` (it had one), then the
    prediction columns of the pooled probabilities, decided at `threshold` (what the
    per-image table used: the run's, or the one asked for). `tracks`: each row's track
    (default the table's `track` column); rows without one are left out. Tracks come in
    the order they first appear."""
    if tracks is None:
        if TRACK_COLUMN not in table.columns:
            raise ClipAdaptError(f"Pooling by track needs a '{TRACK_COLUMN}' column in the manifest (one id per "
                                 f"tracked object); the table has {list(table.columns)[:12]}.")
        tracks = table[TRACK_COLUMN]
    codes, order = track_codes(tracks)
    pooled, frames = pooled_by_track(table_probabilities(task, table), codes, len(order),
                                     table["ok"].to_numpy(bool), pooling)
    out = {TRACK_COLUMN: order, "frames": frames, "ok": frames > 0}
    out.update(prediction_columns(task, pooled, threshold, frames > 0))
    return pd.DataFrame(out)


def tracks_path(out):
    """Where `predict --out OUT` writes its per-track table: beside OUT, OUT's stem +
    '.tracks' + OUT's suffix (predictions.csv -> predictions.tracks.csv)."""
    from pathlib import Path

    out = Path(out)
    return out.with_name(f"{out.stem}.tracks{out.suffix}")


def track_scores(labels: np.ndarray, probs: list[np.ndarray], tracks, task: TaskSpec, threshold=0.5,
                 pooling: str = "probability") -> dict:
    """Evaluation per track: the test rows pooled by `tracks` (one id per row; "" or None:
    in no track) and scored against the track's labels, beside the same rows scored one
    by one. `labels` [N, A] (-1 = not labelled), `probs` per attribute [N, K]. A
    multi-label task gives mA (and the field's other scores, `multilabel`); a single-label
    one the mean accuracy over attributes. Labels must be per track: rows of one track
    that disagree on a label are a ClipAdaptError naming the track."""
    codes, order = track_codes(tracks)
    truth = np.full((len(order), len(task)), -1, dtype=np.int64)
    for a, attr in enumerate(task.attributes):
        known = (codes >= 0) & (labels[:, a] >= 0)
        low = np.full(len(order), np.iinfo(np.int64).max)
        high = np.full(len(order), -1)
        np.minimum.at(low, codes[known], labels[known, a])
        np.maximum.at(high, codes[known], labels[known, a])
        split = np.flatnonzero((high >= 0) & (low != high))
        if len(split):
            t = split[0]
            raise ClipAdaptError(f"Track '{order[t]}' has rows labelled differently for '{attr.name}' "
                                 f"({low[t]} and {high[t]}); scoring per track needs one label per track. "
                                 "Fix the labels or the track column.")
        truth[:, a] = high
    pooled, _ = pooled_by_track(probs, codes, len(order), pooling=pooling)
    frames = np.flatnonzero(codes >= 0)
    out = {"pooling": pooling, "tracks": len(order), "frames": int(len(frames))}
    if not order:
        return out
    if task.multilabel:
        from clipadapt.metrics.multilabel import par_metrics

        per_track = par_metrics(truth, np.stack([p[:, 1] for p in pooled], 1), threshold, task.names)
        per_frame = par_metrics(labels[frames], np.stack([p[frames, 1] for p in probs], 1), threshold, task.names)
        return {**out, "mA": per_track["mA"], "frame_mA": per_frame["mA"], "multilabel": per_track}
    accuracy = [_accuracy(truth[:, a], pooled[a]) for a in range(len(task))]
    frame_accuracy = [_accuracy(labels[frames, a], probs[a][frames]) for a in range(len(task))]
    return {**out, "accuracy": float(np.nanmean(accuracy)), "frame_accuracy": float(np.nanmean(frame_accuracy)),
            "per_attribute": {attr.name: acc for attr, acc in zip(task.attributes, accuracy)}}


def _accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    """The share of labelled rows whose most probable class is their label (NaN: none labelled)."""
    known = labels >= 0
    return float((probs[known].argmax(1) == labels[known]).mean()) if known.any() else float("nan")
