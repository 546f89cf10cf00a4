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


def pool(probs: np.ndarray, pooling: str = "probability") -> np.ndarray:
    """[K] pooled class probabilities of one track's [F, K] frames (see the module's note)."""
    if pooling == "probability":
        return probs.mean(axis=0)
    logs = np.log(np.clip(probs, _CLIP, 1.0)).mean(axis=0)
    logs -= logs.max()
    weights = np.exp(logs)
    return weights / weights.sum()


def pool_tracks(table: pd.DataFrame, task: TaskSpec, threshold=0.5, tracks=None,
                pooling: str = "probability") -> pd.DataFrame:
    """One row per track of a prediction table (`clipadapt predict`'s or `Run.predict`'s):
    `track`, `frames` (its usable rows, the ones pooled), `ok` (it had one), then the
    prediction columns of the pooled probabilities, decided at `threshold` (what the
    per-image table used: the run's, or the one asked for). `tracks`: each row's track
    (default the table's `track` column); rows without one are left out. Tracks come in
    the order they first appear."""
    if pooling not in POOLINGS:
        raise ClipAdaptError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    if tracks is None:
        if TRACK_COLUMN not in table.columns:
            raise ClipAdaptError(f"Pooling by track needs a '{TRACK_COLUMN}' column in the manifest (one id per "
                                 f"tracked object); the table has {list(table.columns)[:12]}.")
        tracks = table[TRACK_COLUMN]
    ids = pd.Series(tracks, dtype="string").reset_index(drop=True).str.strip()
    named = ids.notna() & (ids != "")
    ok = table["ok"].to_numpy(bool)
    probs = table_probabilities(task, table)
    order = list(dict.fromkeys(ids[named]))
    rows = {track: np.flatnonzero((ids == track).fillna(False).to_numpy() & ok) for track in order}
    pooled = [np.full((len(order), p.shape[1]), np.nan) for p in probs]
    for t, track in enumerate(order):
        if len(rows[track]):
            for a, p in enumerate(probs):
                pooled[a][t] = pool(p[rows[track]], pooling)
    frames = np.array([len(rows[track]) for track in order], dtype=np.int64)
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
    ids = pd.Series(list(tracks), dtype="string").str.strip()
    named = (ids.notna() & (ids != "")).to_numpy()
    order = list(dict.fromkeys(ids[named]))
    groups = [np.flatnonzero((ids == track).fillna(False).to_numpy()) for track in order]
    truth = np.full((len(order), len(task)), -1, dtype=np.int64)
    for t, rows in enumerate(groups):
        for a, attr in enumerate(task.attributes):
            seen = np.unique(labels[rows, a][labels[rows, a] >= 0])
            if len(seen) > 1:
                raise ClipAdaptError(f"Track '{order[t]}' has rows labelled differently for '{attr.name}' "
                                     f"({sorted(seen.tolist())}); scoring per track needs one label per track. "
                                     "Fix the labels or the track column.")
            truth[t, a] = seen[0] if len(seen) else -1
    pooled = [np.stack([pool(p[rows], pooling) for rows in groups]) if groups else p[:0] for p in probs]
    frames = np.concatenate(groups) if groups else np.zeros(0, np.int64)
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
