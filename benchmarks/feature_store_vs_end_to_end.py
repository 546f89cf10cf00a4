"""Benchmark: one CLIP-MHAdapter training epoch from the feature store vs end to end.

Same images, same method (ViT-B/16 shapes: 196 patch tokens x 768, embed 512, random
weights: compute is identical to the OpenAI weights), measured in ONE run so the ratio
is robust to the machine's load. Prints a table and writes a JSON record.

    .venv/bin/python benchmarks/feature_store_vs_end_to_end.py [--images 64] [--backbone ViT-B-16]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from clipadapt.backbone import create_backbone
from clipadapt.config import RunConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.engine.losses import AttributeLoss
from clipadapt.engine.optim import build_optimizer
from clipadapt.engine.trainer import Runner
from clipadapt.methods import build_method
from clipadapt.task import TaskSpec


def render_images(folder: Path, n: int) -> LabelledImages:
    from clipadapt.data.synthetic.streets import render_street_scene, sample_scene_labels

    rng = np.random.default_rng(0)
    attr = gss_attribute("weather", GSS_SCHEMA["weather"][1])
    paths, labels = [], []
    for i in range(n):
        scene = sample_scene_labels(rng)
        path = folder / f"{i:05d}.jpeg"
        render_street_scene(scene, rng, size=256).save(path, quality=90)
        paths.append(path)
        labels.append(attr.classes.index(scene["weather"]))
    return LabelledImages(paths, np.array(labels)[:, None], TaskSpec((attr,)))


def timed_epoch(runner: Runner, images: LabelledImages, epoch: int) -> float:
    method, cfg = runner.method, runner.cfg.train
    criterion = AttributeLoss("ce", [images.class_counts(0)])
    optimizer = build_optimizer(method, cfg)
    source = runner.source(images, train=True)
    start = time.perf_counter()
    runner._train_epoch(source, torch.as_tensor(images.labels), criterion, optimizer, epoch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="ViT-B-16")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/feature_store_vs_end_to_end.json"))
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = render_images(tmp, args.images)
        backbone = create_backbone(args.backbone, None)
        method = build_method("mhadapter", backbone, images.task, {"heads": 4})
        base = {"train": {"batch_size": args.batch_size, "device": "auto"}, "features": {"dir": str(tmp / "cache")}}
        cached = Runner(method, RunConfig.model_validate(base), progress=False)
        t0 = time.perf_counter()
        cached.source(images, train=True)  # one-time extraction into the store
        extraction = time.perf_counter() - t0
        store_epoch = timed_epoch(cached, images, epoch=0)
        e2e = Runner(method, RunConfig.model_validate({**base, "train": {**base["train"], "end_to_end": True}}), progress=False)
        e2e_epoch = timed_epoch(e2e, images, epoch=0)

    record = {
        "backbone": args.backbone, "images": args.images, "batch_size": args.batch_size,
        "device": str(cached.device), "cpu_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "extraction_s": round(extraction, 2), "store_epoch_s": round(store_epoch, 3), "end_to_end_epoch_s": round(e2e_epoch, 2),
        "speedup_store_vs_end_to_end": round(e2e_epoch / store_epoch, 1),
        "store_images_per_s": round(args.images / store_epoch, 1), "end_to_end_images_per_s": round(args.images / e2e_epoch, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for key, value in record.items():
        print(f"{key:>30}: {value}")


if __name__ == "__main__":
    main()
