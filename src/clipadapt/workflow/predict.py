"""Prediction runs: every attribute of every image, from a run folder (torch, locally or
on Ray) or from an exported ONNX file (onnxruntime), written as CSV or Parquet.

A manifest's id and coordinates (or the columns --keep names, or coordinates joined from
--metadata by uuid) travel with the rows, right after `path` (predict/places.py); with
coordinates, Parquet output is GeoParquet (clipadapt/geoparquet.py)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from clipadapt.errors import ClassTextWarning, ClipAdaptError


@dataclass(frozen=True)
class PredictOptions:
    """How to predict: batch, decoding workers, the multi-label threshold (None: the run's),
    what an unusable image does, JPEG decoding, backbone precision and device, and for an
    ONNX file onnxruntime's intra-op threads (None: all cores)."""

    batch_size: int = 64
    num_workers: int = 0
    threshold: float | None = None
    on_bad_image: str = "skip"
    decode: str = "draft"
    precision: str = "fp32"
    device: str = "auto"
    threads: int | None = None


@dataclass
class PredictOutcome:
    """What a prediction run wrote, as lines to show the user."""

    lines: list[str] = field(default_factory=list)


def predict_run(inputs: list[str], out: Path, *, checkpoint: Path | None = None, model: Path | None = None,
                options: PredictOptions = PredictOptions(), ray=None, shard_size: int = 1000,
                progress: bool = True, keep: str | None = None, metadata: Path | None = None) -> PredictOutcome:
    """Predict the images named by `inputs` (folders, files, globs, manifests) with a run
    folder (`checkpoint`) or an ONNX file (`model`), exactly one of them. `ray` (RayOptions):
    run on Ray actors, writing Parquet shards into the folder `out`. `keep`: the manifest
    columns to carry (None: id and coordinates; "all"; "none"; "COL[,COL...]"); `metadata`:
    a table of uuid + lat/lon to join coordinates from (predict/places.py)."""
    # torch-free: bad inputs, --keep and --metadata are answered before a model loads
    from clipadapt.data.boxes import TRACK_COLUMN, has_boxes
    from clipadapt.predict.places import carried_columns, collect_inputs

    if (checkpoint is None) == (model is None):
        raise ClipAdaptError("predict needs either --checkpoint or --model (one of them): a run folder, or an "
                             ".onnx file written by `clipadapt export`.")
    out = Path(out)
    if ray is None and out.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise ClipAdaptError(f"--out {out}: use a .csv or .parquet file name.")  # before hours of predicting
    paths, table = collect_inputs(inputs)
    places = carried_columns(paths, table, keep, metadata)
    tracks = table[TRACK_COLUMN] if TRACK_COLUMN in table.columns else None  # pooled per track beside the rows
    if has_boxes(paths) and ray is not None:
        raise ClipAdaptError("Boxes in frames (x, y, w, h or x1, y1, x2, y2 columns) are cut by the local engines "
                             "only (--checkpoint, or --model with onnxruntime): predict them without --engine ray, "
                             "or save the crops as files first.")
    if model is not None:
        if ray is not None:
            raise ClipAdaptError("--model runs on this machine (onnxruntime); --engine ray needs --checkpoint.")
        return _predict_onnx(Path(model), paths, out, options, places, tracks)
    return _predict_torch(Path(checkpoint), paths, out, options, ray, shard_size, progress, places, tracks)


def _predict_torch(checkpoint: Path, paths: list, out: Path, options: PredictOptions, ray, shard_size: int,
                   progress: bool, places=None, tracks=None) -> PredictOutcome:
    from clipadapt.backbone.clip import CPU_ONLY_PRECISIONS
    from clipadapt.engine.checkpoint import load_run
    from clipadapt.engine.devices import resolve_device
    from clipadapt.methods.text_check import check_class_texts

    outcome = PredictOutcome()
    # a CPU-only precision (int8): 'auto' then means the CPU, not a GPU
    cpu_only = options.device == "auto" and options.precision in CPU_ONLY_PRECISIONS
    device = resolve_device("cpu" if cpu_only else options.device)
    method, card = load_run(checkpoint, device=device)
    for note in check_class_texts(method, stop=False):  # a run that cannot tell classes apart predicts blind
        warnings.warn(note, ClassTextWarning, stacklevel=2)
    # an explicit --threshold decides every attribute; otherwise the run's own, one per attribute
    threshold = method.thresholds() if options.threshold is None else options.threshold
    shared = dict(batch_size=options.batch_size, num_workers=options.num_workers, threshold=threshold,
                  on_bad_image=options.on_bad_image, decode=options.decode, precision=options.precision)
    if ray is not None:  # same per-batch code, run shard by shard on Ray actors
        outcome = predict_on_ray(checkpoint, paths, out, ray, shard_size, progress, shared, places=places)
        if tracks is not None:
            outcome.lines.append("tracks are pooled by the local engine only: pool the shards with "
                                 "clipadapt.predict.tracks.pool_tracks (docs/cli.md).")
        return outcome
    from clipadapt.predict import predict_images

    table = predict_images(method, paths, device, progress=progress, **shared)
    if table.attrs.get("agreement") is not None:
        outcome.lines.append(table.attrs["agreement"].describe())
    outcome.lines += _write_table(table, out, places, tracks=(method.task, threshold, tracks))
    return outcome


def predict_on_ray(checkpoint: Path, paths: list, out: Path, ray, shard_size: int, progress: bool,
                   shared: dict, places=None) -> PredictOutcome:
    """The run in `checkpoint` on Ray actors (RayOptions `ray`): Parquet shards in the folder
    `out`; `shared`: predict_images' options (batch, workers, threshold, decoding, precision);
    `places` (predict/places.py): the columns each shard's rows carry."""
    from dataclasses import replace

    from clipadapt.backbone.clip import CPU_ONLY_PRECISIONS
    from clipadapt.distributed.ray_predict import predict_with_ray

    if out.suffix.lower() in (".csv", ".parquet", ".pq"):
        raise ClipAdaptError(f"--engine ray writes Parquet shards into a folder, not {out.name}: give --out FOLDER "
                             "(read it back with pandas.read_parquet(FOLDER)).")
    outcome = PredictOutcome()
    if shared["precision"] != "fp32":
        outcome.lines.append(f"precision {shared['precision']} on Ray: its agreement with fp32 is not measured per "
                             "shard; run the local engine on a sample of the images to see it.")
    if shared["precision"] in CPU_ONLY_PRECISIONS:  # as the local engine's --device auto
        ray = replace(ray, gpus_per_actor=0.0)
    if places is not None:
        outcome.lines += places.lines
    carried = places.columns if places is not None and places.columns.shape[1] else None
    done = predict_with_ray(checkpoint, paths, out, ray, shard_size=shard_size, progress=progress, carried=carried,
                            points=bool(places is not None and places.has_points), **shared)
    bad = f"; {done['unreadable']} unusable images (ok=false in their rows)" if done["unreadable"] else ""
    kind = "GeoParquet shards" if places is not None and places.has_points else "shards"
    outcome.lines.append(f"wrote {done['rows']} rows in {done['shards']} {kind} to {out} "
                         f"({done['computed_shards']} computed now, the rest already there){bad}")
    return outcome


def _predict_onnx(model: Path, paths: list, out: Path, options: PredictOptions, places=None,
                  tracks=None) -> PredictOutcome:
    """An exported file through onnxruntime (CPU); no torch is needed on this path."""
    from clipadapt.runtime import OnnxModel, predict_onnx

    if options.precision != "fp32":
        raise ClipAdaptError("--precision applies to --checkpoint; an int8 ONNX file is made with "
                             "`clipadapt export --int8` and predicted with --model like any other.")
    if options.device not in ("auto", "cpu"):
        raise ClipAdaptError(f"--model runs on onnxruntime's CPU provider; --device {options.device} needs --checkpoint.")
    onnx_model = OnnxModel(model, threads=options.threads)
    table = predict_onnx(onnx_model, paths, batch_size=options.batch_size, threshold=options.threshold,
                         on_bad_image=options.on_bad_image, decode=options.decode, num_workers=options.num_workers)
    threshold = onnx_model.thresholds if options.threshold is None else options.threshold  # predict_onnx's
    return PredictOutcome(_write_table(table, out, places, f" (onnxruntime, {onnx_model.metadata.get('precision', 'fp32')})",
                                       (onnx_model.task, threshold, tracks)))


def _write_table(table, out: Path, places=None, engine: str = "", tracks=None) -> list[str]:
    """Write the predictions with the carried columns after `path` (GeoParquet when they
    hold lat/lon and OUT is .parquet), the skip list when anything was skipped, and with
    `tracks` (task, the threshold the rows used, each row's track or None) one row per
    track beside them (predict/tracks.py); the lines to show."""
    from clipadapt.predict.places import attach
    from clipadapt.predict.tables import write_predictions

    points = places is not None and places.has_points
    pooled = _pooled_tracks(table, tracks)
    if places is not None:
        table = attach(table, places.columns)
    skipped, listed = write_predictions(table, out, points=points)
    geo = " as GeoParquet" if points and Path(out).suffix.lower() != ".csv" else ""
    return [*(places.lines if places is not None else []),
            f"wrote {len(table)} rows to {out}{geo}{engine}; {len(skipped)} of {len(table)} images skipped"
            + (f" (unusable: ok=false, listed with the reason in {listed})" if skipped else ""),
            *(_write_tracks(pooled, out) if pooled is not None else [])]


def _pooled_tracks(table, tracks):
    """The per-track table of `table` (None without a track column): see `_write_table`."""
    if tracks is None or tracks[2] is None:
        return None
    from clipadapt.predict.tracks import pool_tracks

    task, threshold, ids = tracks
    return pool_tracks(table, task, threshold, ids)


def _write_tracks(pooled, out: Path) -> list[str]:
    from clipadapt.predict.tables import write_table
    from clipadapt.predict.tracks import tracks_path

    written = write_table(pooled, tracks_path(out))
    empty = int((~pooled["ok"]).sum())
    return [f"wrote {len(pooled)} tracks (each pooled over its usable frames) to {written}"
            + (f"; {empty} without a usable frame (ok=false)" if empty else "")]
