"""Benchmark: one PromptPAR training step (forward + backward + SGD) against one plain
forward of the frozen CLIP image tower, same batch, same run; peak resident memory.

ViT-B/16 shapes (224 px, 196 patches, width 768) with random weights: the compute does
not depend on the values. 26 attributes (PA100K), batch 16 (the authors' recipe).

    .venv/bin/python benchmarks/promptpar_step.py [--backbone ViT-B-16] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench_common import interleaved_medians, machine, peak_rss_mib, quiet, save_record
from clipadapt.backbone import create_backbone
from clipadapt.config import TrainConfig
from clipadapt.engine.losses import AttributeLoss
from clipadapt.engine.optim import build_optimizer
from clipadapt.methods import build_method
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec


def measure(backbone_name: str = "ViT-B-16", batch: int = 16, attributes: int = 26, repeats: int = 3) -> dict:
    """Median seconds of a PromptPAR training step and of a frozen forward, same batch; peak RSS."""
    quiet()
    torch.manual_seed(0)
    backbone = create_backbone(backbone_name, None)
    task = TaskSpec(tuple(Attribute(f"attribute {i}", BINARY_CLASSES, template=f"A pedestrian with attribute {i}")
                          for i in range(attributes)), multilabel=True)
    method = build_method("promptpar", backbone, task, {})
    images = torch.randn(batch, 3, backbone.image_size, backbone.image_size)
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 2, (batch, attributes)))
    criterion = AttributeLoss("weighted_bce", [np.array([3, 1])] * attributes)
    optimizer = build_optimizer(method, TrainConfig(optimizer="sgd", lr=8e-3, weight_decay=1e-4))
    rss_model = peak_rss_mib()

    def frozen_forward():
        with torch.no_grad():
            backbone.forward_features(images, None)

    forward_s = interleaved_medians({"forward": frozen_forward}, repeats)["forward"]
    rss_forward = peak_rss_mib()

    def train_step():
        method.train()
        logits, extra = method.training_forward_images(images)
        loss = criterion(logits, labels) + sum(w * criterion(aux, labels) for w, aux in extra)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in method.parameters() if p.requires_grad], 10.0)
        optimizer.step()

    step_s = interleaved_medians({"step": train_step}, repeats)["step"]
    rss_step = peak_rss_mib()
    return {
        "backbone": backbone_name, "batch": batch, "attributes": attributes, "repeats": repeats,
        "tokens": method.layout.length, "trainable_parameters": method.num_trainable(), **machine(),
        "frozen_forward_s": round(forward_s, 3), "promptpar_step_s": round(step_s, 3),
        "step_over_forward": round(step_s / forward_s, 2),
        "step_images_per_s": round(batch / step_s, 2),
        "peak_rss_mib": {"model_built": round(rss_model), "after_forward": round(rss_forward),
                         "after_train_step": round(rss_step)},
        "train_step_extra_mib_over_forward": round(rss_step - rss_forward),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="ViT-B-16")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--attributes", type=int, default=26)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/promptpar_step.json"))
    args = parser.parse_args()
    record = measure(args.backbone, args.batch, args.attributes, args.repeats)
    save_record(record, args.out, width=34)


if __name__ == "__main__":
    main()
