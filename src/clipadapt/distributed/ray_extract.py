"""`clipadapt extract --engine ray`: feature-store entries filled by a pool of Ray actors.

The rows of an entry (view-major: every item of view 0, then view 1 ...) are cut into
shards; each actor loads and encodes its shard's images with the code the local store
filler uses (`clipadapt.features.encoding`) and writes one Parquet file (item, view,
embedding, fp16 tokens) into SHARDS/<entry key>/. The driver then copies the shards
into the local feature-store entry, which training reads as if it had filled it
itself. Finished shards are skipped on a rerun, as are shards the entry already holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from clipadapt.distributed.ray_runtime import RayOptions, run_shards, shard_summaries
from clipadapt.distributed.shards import (
    DEFAULT_SHARD_SIZE, Shard, ShardPlan, claim_folder, make_plan, pending, read_shards, shard_metadata, write_shard,
)
from clipadapt.bars import progress_bar
from clipadapt.errors import ClipAdaptError
from clipadapt.threads import share_cores
from clipadapt.features.encoding import entry_parts, frozen_encoder, token_shape, view_batches
from clipadapt.features.store import FeatureSet, FeatureStore, feature_key

SHARDS_FOLDER = ".ray-shards"  # under the store root by default; hidden, so not listed as an entry


class ShardEncoder:
    """A Ray actor holding the frozen backbone; encodes one shard per call and writes it."""

    def __init__(self, backbone: dict, tap_block: int | None, batch_size: int, num_workers: int, threads: int = 1,
                 use_gpu: bool = False):
        from clipadapt.backbone import open_backbone

        share_cores(threads)  # the driver's share of the node for this actor
        device = torch.device("cuda" if use_gpu else "cpu")
        self.backbone = open_backbone(backbone).to(device)
        if self.backbone.weights_id != backbone["weights_id"]:  # another file at the same path on this node
            raise ClipAdaptError(f"Ray worker: the backbone weights here ({self.backbone.weights_id}) are not the "
                                 f"driver's ({backbone['weights_id']}); every node must see the same weights file.")
        self.encode = frozen_encoder(self.backbone, tap_block, device)
        self.batch_size, self.num_workers = batch_size, num_workers

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return shard_summaries(batch, self.encode_shard)

    def encode_shard(self, row) -> int:
        """Encode one shard's images (its view) and write its Parquet file; returns its rows."""
        items = [int(i) for i in row.items]
        sources = list(row.sources) if len(row.sources) else None
        loader = view_batches(self.backbone, list(row.paths), sources, items, int(row.view), int(row.views),
                              self.batch_size, self.num_workers)
        got_items, tokens, embeds = [], [], []
        with torch.inference_mode():
            for images, index in loader:
                tok, emb = self.encode(images)
                got_items.append(index.numpy())
                embeds.append(emb.float().cpu().numpy())
                tokens.append(tok.half().cpu().numpy() if tok is not None else None)
        table = shard_table(np.concatenate(got_items), int(row.view), np.concatenate(embeds),
                            np.concatenate(tokens) if tokens[0] is not None else None)
        write_shard(Path(row.folder), Shard(int(row.shard), int(row.start), int(row.stop)), table,
                    metadata={"token_shape": list(tokens[0].shape[1:]) if tokens[0] is not None else None})
        return len(items)


def shard_table(items: np.ndarray, view: int, embeds: np.ndarray, tokens: np.ndarray | None) -> pa.Table:
    """One shard as Arrow: item, view, embedding (float32 list), tokens (raw float16 bytes)."""
    columns = {
        "item": pa.array(items.astype(np.int64)),
        "view": pa.array(np.full(len(items), view, dtype=np.int32)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embeds.astype(np.float32).ravel()), embeds.shape[1]),
    }
    if tokens is not None:
        flat = np.ascontiguousarray(tokens.astype(np.float16)).reshape(len(items), -1)
        columns["tokens"] = pa.array([r.tobytes() for r in flat], type=pa.binary(flat.shape[1] * 2))
    return pa.table(columns)


def shard_arrays(folder: Path, shard: Shard) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(items, views, embeddings [n, E], tokens [n, T, D] float16 or None) of one shard file."""
    table = read_shards(folder, [shard])
    embeds = np.stack(table["embedding"].to_numpy()).astype(np.float32)
    shape = shard_metadata(folder / shard.name).get("token_shape")
    tokens = None
    if shape is not None:
        tokens = np.frombuffer(b"".join(table["tokens"]), dtype=np.float16).reshape(len(table), *shape)
    return table["item"].to_numpy(), table["view"].to_numpy(), embeds, tokens


@dataclass
class _Entry:
    """One split's store entry and its shard plan."""

    name: str
    images: object
    views: int
    entry: FeatureSet
    folder: Path
    plan: ShardPlan
    todo: list[Shard] = field(default_factory=list)


@dataclass
class RayExtraction:
    """Fill the store entries of a run's splits on Ray (see the module docstring).

    shards_dir: where the Parquet shards go (default: <feature store>/.ray-shards).
    """

    options: RayOptions = field(default_factory=RayOptions)
    shards_dir: Path | None = None
    shard_size: int = DEFAULT_SHARD_SIZE

    def run(self, runner, named_splits: list[tuple[str, object, bool]], progress: bool = True) -> dict:
        """Extract every (name, images, train) split for `runner`'s method; returns what
        `workflow.extract_run` returns: {split: {images, views, key}} (+ the shard folder)."""
        method, cfg = runner.method, runner.cfg
        backbone, tap = method.backbone, method.needs().tap_block
        store = FeatureStore.from_config(cfg.features)
        root = Path(self.shards_dir) if self.shards_dir else store.root / SHARDS_FOLDER
        entries = []
        for name, images, train in named_splits:
            views = cfg.features.train_views if train else 1
            parts = entry_parts(backbone, tap, images.paths, views)
            key = feature_key(parts)
            entry = store.open(parts, len(images), views, token_shape(backbone, tap), backbone.embed_dim)
            plan = make_plan("extract", len(images) * views, self.shard_size, key, group_rows=len(images))
            entries.append(_Entry(name, images, views, entry, root / key, plan))
        rows = []
        for e in entries:
            if e.entry.complete:
                continue
            claim_folder(e.folder, e.plan)
            e.todo = [s for s in pending(e.folder, e.plan) if not _held(e.entry, s)]
            rows += [_shard_row(e, s) for s in e.todo]
        worker = {"backbone": backbone.describe(), "tap_block": tap,
                  "batch_size": cfg.features.batch_size, "num_workers": cfg.train.num_workers}
        with progress_bar(progress) as bar:
            job = bar.add_task("features (ray)", total=sum(len(r["items"]) for r in rows), info="")
            run_shards(rows, ShardEncoder, worker, self.options, on_done=lambda r: bar.advance(job, int(r["rows"])))
        for e in entries:
            _copy_into_entry(e)
        return {e.name: {"images": len(e.images), "views": e.views, "key": e.entry.key, "shards": str(e.folder)}
                for e in entries}


def _rows_of(entry: FeatureSet, shard: Shard) -> tuple[np.ndarray, int]:
    """(items, view) of a shard: rows are view-major over the entry's items."""
    view = shard.start // entry.n_items
    first = shard.start - view * entry.n_items
    return np.arange(first, first + (shard.stop - shard.start)), view


def _held(entry: FeatureSet, shard: Shard) -> bool:
    items, view = _rows_of(entry, shard)
    return bool(entry.done[items, view].all())


def _shard_row(e: _Entry, shard: Shard) -> dict:
    items, view = _rows_of(e.entry, shard)
    sources = e.images.sources
    return {"shard": shard.index, "start": shard.start, "stop": shard.stop, "folder": str(e.folder.resolve()),
            "view": view, "views": e.views, "items": items.tolist(),
            "paths": [str(e.images.paths[i]) for i in items],
            "sources": [sources[i] for i in items] if sources is not None else []}


def _copy_into_entry(e: _Entry) -> None:
    """Write every shard the entry does not hold yet into it, flushing after each shard."""
    for shard in e.plan.shards():
        if e.entry.complete:
            break
        if _held(e.entry, shard):
            continue
        if not (e.folder / shard.name).is_file():
            raise ClipAdaptError(f"Shard {e.folder / shard.name} is missing after the Ray job; rerun the extraction.")
        items, views, embeds, tokens = shard_arrays(e.folder, shard)
        e.entry.write(items, int(views[0]), tokens, embeds, flush=True)
    if not e.entry.complete:
        raise ClipAdaptError(f"The feature-store entry {e.entry.path} is still incomplete after copying the shards "
                             f"of {e.folder}; delete that folder and rerun the extraction.")
