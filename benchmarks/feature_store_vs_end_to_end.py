"""Benchmark: one CLIP-MHAdapter training epoch from the feature store vs end to end.

Same images, same method (ViT-B/16 shapes: 196 patch tokens x 768, embed 512, random
weights: compute is identical to the OpenAI weights), measured in ONE run, the two
epochs timed in turn, so the ratio is robust to the machine's load. End to end is the
authors' way (--authors-way, the default): open_clip's own image forward every step and
the text features recomputed every step. Prints a table and writes a JSON record.

    .venv/bin/python benchmarks/feature_store_vs_end_to_end.py [--images 64] [--backbone ViT-B-16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_common import count_flops, machine, quiet, save_record, timed_with_matmul_rate, tower_gemm
from clipadapt.backbone import create_backbone
from clipadapt.config import RunConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.engine.losses import AttributeLoss
from clipadapt.engine.optim import build_optimizer
from clipadapt.engine.trainer import Runner
from clipadapt.methods import build_method
from clipadapt.methods.base import TextClassifier
from clipadapt.task import TaskSpec


def render_images(folder: Path, n: int, size: int = 256, frame: tuple[int, int] | None = None) -> LabelledImages:
    """`n` labelled street scenes as JPEGs (weather task); `frame` (w, h) scales them to that
    size with fine grain added, so JPEG decoding costs what a real photo of that size costs."""
    from PIL import Image

    from clipadapt.synthetic.streets import render_street_scene, sample_scene_labels

    rng = np.random.default_rng(0)
    attr = gss_attribute("weather", GSS_SCHEMA["weather"][1])
    paths, labels = [], []
    for i in range(n):
        scene = sample_scene_labels(rng)
        image = render_street_scene(scene, rng, size=size)
        if frame is not None:
            pixels = np.asarray(image.resize(frame, Image.BICUBIC), dtype=np.int16)
            pixels = pixels + rng.integers(-12, 13, pixels.shape, dtype=np.int16)  # sensor grain: real entropy
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        path = folder / f"{i:05d}.jpeg"
        image.save(path, quality=90)
        paths.append(path)
        labels.append(attr.classes.index(scene["weather"]))
    return LabelledImages(paths, np.array(labels)[:, None], TaskSpec((attr,)))


def epoch_runner(runner: Runner, images: LabelledImages):
    """A callable that trains `runner`'s method for one epoch on `images`."""
    criterion = AttributeLoss("ce", [images.class_counts(0)])
    optimizer = build_optimizer(runner.method, runner.cfg.train)
    source = runner.source(images, train=True)
    labels = torch.as_tensor(images.labels)
    return lambda: runner.train_one_epoch(source, labels, criterion, optimizer, 0)


def authors_way(runner: Runner) -> None:
    """Make `runner` train as the authors' code does: open_clip's image forward every step and
    the text features of the class prompts recomputed every step."""
    method = runner.method
    method.backbone.fast = False
    step = runner._training_pass

    def recompute_text_then_step(batch):
        method.text = TextClassifier(method.backbone, method.task).to(runner.device)
        return step(batch)

    runner._training_pass = recompute_text_then_step


def measure(n_images: int = 64, batch_size: int = 32, backbone_name: str = "ViT-B-16", repeats: int = 1,
            frame: tuple[int, int] | None = None, authors: bool = True, flops: bool = False) -> dict:
    """Epoch seconds from the store and end to end (medians of `repeats`, timed in turn)."""
    quiet()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = render_images(tmp, n_images, frame=frame)
        base = {"train": {"batch_size": batch_size, "device": "auto"}, "features": {"dir": str(tmp / "cache")}}

        def runner(end_to_end: bool) -> Runner:
            backbone = create_backbone(backbone_name, None)
            method = build_method("mhadapter", backbone, images.task, {"heads": 4})
            cfg = RunConfig.model_validate({**base, "train": {**base["train"], "end_to_end": end_to_end}})
            return Runner(method, cfg, progress=False)

        cached = runner(False)
        t0 = time.perf_counter()
        cached.source(images, train=True)  # one-time extraction into the store
        extraction = time.perf_counter() - t0
        e2e = runner(True)
        if authors:
            authors_way(e2e)
        epochs = {"store": epoch_runner(cached, images), "end_to_end": epoch_runner(e2e, images)}
        cpu: dict[str, float] = {}
        medians, rate = timed_with_matmul_rate(epochs, repeats, tower_gemm(cached.method.backbone, batch_size),
                                               warmup=0, cpu_seconds=cpu)
        step_flops = step_flops_of(cached, e2e, images, batch_size) if flops else None
    record = {
        "backbone": backbone_name, "images": n_images, "batch_size": batch_size, "repeats": repeats,
        "jpeg": list(frame) if frame else [512, 256], "authors_way": authors, "device": str(cached.device), **machine(),
        "extraction_s": round(extraction, 2), "store_epoch_s": round(medians["store"], 3),
        "end_to_end_epoch_s": round(medians["end_to_end"], 2),
        "speedup_store_vs_end_to_end": round(medians["end_to_end"] / medians["store"], 1),
        "speedup_in_cpu_seconds": round(cpu["end_to_end"] / cpu["store"], 1), "matmul_gflops": round(rate, 1),
        "store_images_per_s": round(n_images / medians["store"], 1),
        "end_to_end_images_per_s": round(n_images / medians["end_to_end"], 2),
    }
    if step_flops is not None:
        steps = -(-n_images // batch_size)
        record.update({f"{k}_step_gflop": round(v / 1e9, 2) for k, v in step_flops.items()})
        record["flop_ratio_end_to_end_over_store"] = round(step_flops["end_to_end"] / step_flops["store"], 1)
        record["store_gflops_achieved"] = round(steps * step_flops["store"] / medians["store"] / 1e9, 1)
        record["end_to_end_gflops_achieved"] = round(steps * step_flops["end_to_end"] / medians["end_to_end"] / 1e9, 1)
    return record


def step_flops_of(cached: Runner, e2e: Runner, images: LabelledImages, batch_size: int) -> dict[str, int]:
    """FLOPs of one store step and of one end-to-end step (same batch); their ratio is the
    speed-up's ceiling when both run at the same arithmetic rate (decoding and reading
    not counted)."""
    order = np.arange(min(batch_size, len(images)))
    fast, e2e.method.backbone.fast = e2e.method.backbone.fast, False  # the counter sees plain ops only
    steps = {}
    for name, runner in (("store", cached), ("end_to_end", e2e)):
        batch, idx = next(iter(runner.source(images, train=True).batches(order, len(order))))
        target = torch.as_tensor(images.labels)[idx].to(runner.device)

        def step():
            logits, _ = runner._training_pass(batch)
            torch.nn.functional.cross_entropy(logits[0], target[:, 0]).backward()

        steps[name] = count_flops(step)
    e2e.method.backbone.fast = fast
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="ViT-B-16")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-authors-way", dest="authors", action="store_false",
                        help="end to end through clipadapt's own fast image pass, text features computed once")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/feature_store_vs_end_to_end.json"))
    args = parser.parse_args()
    record = measure(args.images, args.batch_size, args.backbone, args.repeats, authors=args.authors)
    save_record(record, args.out, width=30)


if __name__ == "__main__":
    main()
