"""`clipadapt predict --engine ray`: the local prediction code, run shard by shard on a
pool of Ray actors, each shard written as one Parquet file (resumable by shard).

The rows of the shard files, in file order, are the rows `--engine local` writes for
the same images: each actor runs `predict_images`, the function behind the local engine,
and puts the shard's slice of the carried columns (a manifest's uuid, lat/lon ...,
predict/places.py) after `path`, as the local engine does; with lat/lon every shard is a
GeoParquet file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow as pa
import torch

from clipadapt.backbone.weights import file_fingerprint
from clipadapt.distributed.ray_runtime import RayOptions, run_shards, shard_summaries
from clipadapt.distributed.shards import (
    DEFAULT_SHARD_SIZE, Shard, claim_folder, make_plan, pending, read_shards, write_shard,
)
from clipadapt.engine.checkpoint import CHECKPOINT
from clipadapt.bars import progress_bar
from clipadapt.errors import ClipAdaptError
from clipadapt.threads import share_cores


class ShardPredictor:
    """A Ray actor holding one run's model; called on one-row batches of shard descriptors."""

    def __init__(self, checkpoint: str, out: str, batch_size: int, num_workers: int, threshold,
                 predict_options: dict, threads: int = 1, use_gpu: bool = False, points: bool = False):
        from clipadapt.engine.checkpoint import load_run

        share_cores(threads)  # the driver's share of the node for this actor
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.method, _ = load_run(Path(checkpoint), device=self.device)
        self.out = Path(out)
        self.options = {"batch_size": batch_size, "num_workers": num_workers, "threshold": threshold, **predict_options}
        self.points = points  # shards as GeoParquet (the carried columns hold lat / lon)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return shard_summaries(batch, self.predict_shard)

    def predict_shard(self, row) -> int:
        from clipadapt.predict.local import predict_images

        # no agreement check per shard: nothing would report it (the CLI says so once)
        from clipadapt.predict.places import attach

        table = predict_images(self.method, [Path(p) for p in row.paths], self.device, progress=False,
                               check_agreement=False, **self.options)
        carried = unpack_frame(row.carried) if getattr(row, "carried", None) else None
        table = attach(table, carried)
        if self.points:
            from clipadapt.geoparquet import to_geoarrow

            table = to_geoarrow(table)
        write_shard(self.out, Shard(int(row.shard), int(row.start), int(row.stop)), table)
        return len(table)


def pack_frame(frame: pd.DataFrame) -> bytes:
    """A shard's slice of the carried columns as Arrow IPC bytes: a plain binary cell of
    the shard's row, which Ray Data moves as it is (types and NAs kept)."""
    sink = pa.BufferOutputStream()
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def unpack_frame(data: bytes) -> pd.DataFrame:
    """The DataFrame `pack_frame` packed."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pandas()


def carried_identity(carried: pd.DataFrame | None) -> list:
    """What the carried columns add to a job's identity: their names and a hash of their
    values (a rerun with other --keep or --metadata is another job). Nothing when none are
    carried, so such jobs resume as before."""
    if carried is None or carried.shape[1] == 0:
        return []
    values = pd.util.hash_pandas_object(carried.reset_index(drop=True), index=False).to_numpy()
    return [list(carried.columns), hex(int(values.sum(dtype="uint64")))]


def checkpoint_identity(run_dir: Path) -> str:
    """What a prediction depends on in a run folder: its trained weights."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ClipAdaptError(f"{run_dir} has no {CHECKPOINT}; pass a finished run folder as --checkpoint.")
    return file_fingerprint(path)


def predict_with_ray(checkpoint: Path, paths: Sequence[Path | str], out: Path, options: RayOptions = RayOptions(),
                     shard_size: int = DEFAULT_SHARD_SIZE, batch_size: int = 64, num_workers: int = 0,
                     threshold=0.5, progress: bool = True, carried: pd.DataFrame | None = None,
                     points: bool = False, **predict_options) -> dict:
    """Predict `paths` with the run in `checkpoint` on Ray; write `out`/part-NNNNNN.parquet.

    Shards already in `out` (from an interrupted run of the same job) are skipped.
    `carried`: columns row for row with `paths`, put after `path` in each shard;
    `points`: they hold lat / lon, so each shard is GeoParquet. `predict_options` go to
    `predict_images` unchanged. Returns a summary: rows, shards, shards computed now, and
    unusable images (ok = false) in the whole folder.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ClipAdaptError("No images to predict.")
    if carried is not None and len(carried) != len(paths):
        raise ClipAdaptError(f"internal: {len(carried)} carried rows for {len(paths)} images.")
    plan = make_plan("predict", len(paths), shard_size, paths, checkpoint_identity(checkpoint), threshold,
                     predict_options, *carried_identity(carried), *(["geoparquet"] if points else []))
    out = Path(out)
    claim_folder(out, plan)
    todo = pending(out, plan)
    rows = [{"shard": s.index, "start": s.start, "stop": s.stop, "paths": paths[s.start:s.stop]} for s in todo]
    if carried is not None and carried.shape[1]:
        for row in rows:  # each shard's own slice travels with it
            row["carried"] = pack_frame(carried.iloc[row["start"]:row["stop"]])
    worker = {"checkpoint": str(Path(checkpoint).resolve()), "out": str(out.resolve()), "batch_size": batch_size,
              "num_workers": num_workers, "threshold": threshold, "predict_options": predict_options,
              "points": points}
    with progress_bar(progress) as bar:
        job = bar.add_task("predict (ray)", total=len(paths), completed=len(paths) - sum(s.stop - s.start for s in todo),
                           info="")
        summaries = run_shards(rows, ShardPredictor, worker, options,
                               on_done=lambda row: bar.advance(job, int(row["rows"])))
    unusable = int((~read_shards(out, plan.shards(), columns=["ok"])["ok"].astype(bool)).sum())
    return {"out": str(out), "rows": len(paths), "shards": len(plan.shards()), "computed_shards": len(summaries),
            "unreadable": unusable}
