"""`clipadapt predict --engine ray`: the local prediction code, run shard by shard on a
pool of Ray actors, each shard written as one Parquet file (resumable by shard).

The rows of the shard files, in file order, are the rows `--engine local` writes for
the same images: each actor runs `predict_images`, the function behind the local engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
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

    def __init__(self, checkpoint: str, out: str, batch_size: int, num_workers: int, threshold: float,
                 predict_options: dict, threads: int = 1, use_gpu: bool = False):
        from clipadapt.engine.checkpoint import load_run

        share_cores(threads)  # the driver's share of the node for this actor
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.method, _ = load_run(Path(checkpoint), device=self.device)
        self.out = Path(out)
        self.options = {"batch_size": batch_size, "num_workers": num_workers, "threshold": threshold, **predict_options}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return shard_summaries(batch, self.predict_shard)

    def predict_shard(self, row) -> int:
        from clipadapt.predict.local import predict_images

        # no agreement check per shard: nothing would report it (the CLI says so once)
        table = predict_images(self.method, [Path(p) for p in row.paths], self.device, progress=False,
                               check_agreement=False, **self.options)
        write_shard(self.out, Shard(int(row.shard), int(row.start), int(row.stop)), table)
        return len(table)


def checkpoint_identity(run_dir: Path) -> str:
    """What a prediction depends on in a run folder: its trained weights."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ClipAdaptError(f"{run_dir} has no {CHECKPOINT}; pass a finished run folder as --checkpoint.")
    return file_fingerprint(path)


def predict_with_ray(checkpoint: Path, paths: Sequence[Path | str], out: Path, options: RayOptions = RayOptions(),
                     shard_size: int = DEFAULT_SHARD_SIZE, batch_size: int = 64, num_workers: int = 0,
                     threshold: float = 0.5, progress: bool = True, **predict_options) -> dict:
    """Predict `paths` with the run in `checkpoint` on Ray; write `out`/part-NNNNNN.parquet.

    Shards already in `out` (from an interrupted run of the same job) are skipped.
    `predict_options` go to `predict_images` unchanged. Returns a summary: rows, shards,
    shards computed now, and unusable images (ok = false) in the whole folder.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ClipAdaptError("No images to predict.")
    plan = make_plan("predict", len(paths), shard_size, paths, checkpoint_identity(checkpoint), threshold,
                     predict_options)
    out = Path(out)
    claim_folder(out, plan)
    todo = pending(out, plan)
    rows = [{"shard": s.index, "start": s.start, "stop": s.stop, "paths": paths[s.start:s.stop]} for s in todo]
    worker = {"checkpoint": str(Path(checkpoint).resolve()), "out": str(out.resolve()), "batch_size": batch_size,
              "num_workers": num_workers, "threshold": threshold, "predict_options": predict_options}
    with progress_bar(progress) as bar:
        job = bar.add_task("predict (ray)", total=len(paths), completed=len(paths) - sum(s.stop - s.start for s in todo),
                           info="")
        summaries = run_shards(rows, ShardPredictor, worker, options,
                               on_done=lambda row: bar.advance(job, int(row["rows"])))
    unusable = int((~read_shards(out, plan.shards(), columns=["ok"])["ok"].astype(bool)).sum())
    return {"out": str(out), "rows": len(paths), "shards": len(plan.shards()), "computed_shards": len(summaries),
            "unreadable": unusable}
