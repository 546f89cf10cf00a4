"""Row (e): peak resident memory of store-backed training as the data set grows 1x -> 10x.

Each size is measured in a fresh process: build the method, open the store entry (the
store's own checks run there), then train one CLIP-MHAdapter epoch from the entry. The
peak of the epoch (VmHWM restarted before it) is the figure; the peak of the whole
process, store opening included, is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench_common import Row, proc_status_mib, quiet, reset_peak_rss
from clipadapt.backbone import create_backbone
from clipadapt.config import RunConfig
from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.engine.losses import AttributeLoss
from clipadapt.engine.optim import build_optimizer
from clipadapt.engine.trainer import Runner
from clipadapt.features.reading import entry_batches, release_resident_pages
from clipadapt.features.store import FeatureStore
from clipadapt.features.views import ViewSampler
from clipadapt.methods import build_method
from clipadapt.task import TaskSpec

TARGET_GROWTH = 0.10
BATCH = 32


def open_entry(root: Path, model: str, n: int):
    """The benchmark's store entry of `n` images for `model`'s shapes (created empty if new)."""
    backbone = create_backbone(model, None)
    parts = {"benchmark": "store memory", "model": model, "images": n}
    return FeatureStore(root).open(parts, n, 1, (backbone.num_patches, backbone.width), backbone.embed_dim)


def fill(root: Path, model: str, n: int) -> float:
    """Random features for every row (compute does not depend on the values); MiB on disk."""
    entry = open_entry(root, model, n)
    rng = np.random.default_rng(0)
    for start in range(0, n, 256):
        rows = np.arange(start, min(start + 256, n))
        tokens = rng.standard_normal((len(rows), *entry.token_shape), dtype=np.float32) * 0.5
        entry.write(rows, 0, tokens, rng.standard_normal((len(rows), entry.embed_dim), dtype=np.float32), flush=False)
    entry.flush()
    release_resident_pages(entry)
    return entry.nbytes / 2**20


class EntrySource:
    """The batch source FeatureBatches is, minus extraction: batches straight from an entry."""

    def __init__(self, entry):
        self.entry, self.sampler = entry, ViewSampler(1)

    def batches(self, order, batch_size, epoch=0):
        return entry_batches(self.entry, self.sampler, order, batch_size, epoch)


def child(root: Path, model: str, n: int) -> dict:
    """In a fresh process: peak memory of opening the entry, then of one training epoch."""
    quiet()
    torch.manual_seed(0)
    attribute = gss_attribute("weather", GSS_SCHEMA["weather"][1])
    method = build_method("mhadapter", create_backbone(model, None), TaskSpec((attribute,)), {})
    entry = open_entry(root, model, n)
    opened = proc_status_mib("VmHWM", "VmRSS")
    release_resident_pages(entry)  # as FeatureBatches does once the entry is open (its checks read every row)
    restarted = reset_peak_rss()
    cfg = RunConfig.model_validate({"train": {"batch_size": BATCH, "device": "cpu"}})
    runner = Runner(method, cfg, progress=False)
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, attribute.num_classes, (n, 1)))
    criterion = AttributeLoss("ce", [np.bincount(labels[:, 0].numpy(), minlength=attribute.num_classes)])
    runner.train_one_epoch(EntrySource(entry), labels, criterion, build_optimizer(method, cfg.train), 0)
    after = proc_status_mib("VmHWM", "VmRSS", "RssAnon", "RssFile")
    return {"images": n, "store_mib": round(entry.nbytes / 2**20, 1), "peak_restarted": restarted,
            "before_epoch_mib": round(opened["VmRSS"]), "peak_process_before_epoch_mib": round(opened["VmHWM"]),
            "peak_epoch_mib": round(after["VmHWM"]), "after_epoch": {k: round(v) for k, v in after.items()}}


def run(ctx) -> list[Row]:
    """Measure (e) at 1x and 10x images (ViT-B/16 shapes; quick: the micro model)."""
    model, n = (ctx.model, 16) if ctx.quick else ("ViT-B-16", 200)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (n, 10 * n):
            fill(Path(tmp), model, size)
            if ctx.quick:  # a smoke run: the code path, not a clean peak
                records.append(child(Path(tmp), model, size))
                continue
            done = subprocess.run([sys.executable, __file__, "--child", tmp, model, str(size)], check=True,
                                  capture_output=True, text=True, timeout=3600)
            records.append(json.loads(done.stdout.strip().splitlines()[-1]))
    small, large = records
    growth = large["peak_epoch_mib"] / small["peak_epoch_mib"] - 1
    process = max(large["peak_epoch_mib"], large["peak_process_before_epoch_mib"]) / max(
        small["peak_epoch_mib"], small["peak_process_before_epoch_mib"]) - 1
    note = (f"peak {small['peak_epoch_mib']} -> {large['peak_epoch_mib']} MiB for a store of {small['store_mib']:.0f} -> "
            f"{large['store_mib']:.0f} MiB; whole process incl. opening the entry: {process:+.1%}")
    return [Row("e", f"peak RSS of one store-backed MHAdapter epoch, {n} -> {10 * n} images ({model})",
                round(100 * growth, 1), "% growth", f"< {100 * TARGET_GROWTH:g}%", growth < TARGET_GROWTH,
                ctx.command("e"), note, {"runs": records, "whole_process_growth": round(process, 3)})]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "MODEL", "IMAGES"), required=True)
    root, model, images = parser.parse_args().child
    print(json.dumps(child(Path(root), model, int(images))))
