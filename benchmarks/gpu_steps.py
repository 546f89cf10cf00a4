"""GPU benchmark: one training step of each patch-token method against a frozen forward
of the same batch, on one CUDA device with the training loops' bf16 autocast; peak GPU
memory of each.

The CPU rows (run_all.py) measure the same steps on a laptop-class CPU; this file gives
the figures for a GPU. Random weights at the papers' shapes (the compute does not depend
on the values):

    mhadapter    ViT-B/16, 8 attributes, batch 32 (the GSS recipe)
    promptpar    ViT-B/16 and ViT-L/14 (the paper's), 26 attributes, batch 16
    microclip    ViT-B/32, batch 64 (SPEC 3): weak view + 8 crops without gradient,
                 strong view with

    python benchmarks/gpu_steps.py --out benchmarks/results/gpu_steps.json
    python benchmarks/gpu_steps.py --device cpu --quick     # a smoke run of the code, no figures

Times are medians of interleaved repeats (forward, step, forward, step ...), each call
ended by a device synchronise; memory is torch.cuda.max_memory_allocated over one step
(after a reset), the model's own weights included.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench_common import interleaved_medians, quiet, save_record
from clipadapt.backbone import create_backbone
from clipadapt.config import RunConfig, TrainConfig
from clipadapt.engine.losses import AttributeLoss
from clipadapt.engine.optim import build_optimizer
from clipadapt.engine.selftrain import SelfTrainer
from clipadapt.methods.microclip.selftraining import microclip_train_defaults
from clipadapt.methods import build_method
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec
from row_steps import self_training_step

CROPS = 8


def autocast(device: torch.device):
    """The training loops' precision: bf16 autocast on CUDA, plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronised(fn, device: torch.device):
    """`fn` that returns only once the device has finished its work."""
    def run():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return run


def peak_mib(fn, device: torch.device) -> float | None:
    """Peak GPU memory allocated during one call of `fn` (None off CUDA)."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return round(torch.cuda.max_memory_allocated(device) / 2**20)


def compare(name: str, forward, step, device: torch.device, batch: int, repeats: int, extra: dict) -> dict:
    """Time `step` against `forward` (interleaved medians) and read each one's peak memory."""
    forward, step = synchronised(forward, device), synchronised(step, device)
    memory = {"forward": peak_mib(forward, device), "step": peak_mib(step, device)}
    seconds = interleaved_medians({"forward": forward, "step": step}, repeats, warmup=2)
    return {"name": name, "batch": batch, **extra,
            "frozen_forward_ms": round(1000 * seconds["forward"], 2), "step_ms": round(1000 * seconds["step"], 2),
            "step_over_forward": round(seconds["step"] / seconds["forward"], 2),
            "step_images_per_s": round(batch / seconds["step"], 1),
            "peak_mib_forward": memory["forward"], "peak_mib_step": memory["step"]}


def frozen_forward(backbone, images, device):
    def run():
        with torch.no_grad(), autocast(device):
            backbone.forward_features(images, None)
    return run


def supervised_step(method, images, labels, criterion, optimizer, device, clip: float):
    """One step as the trainer takes it: forward (+ auxiliary outputs), loss, backward, clip, step."""
    def run():
        method.train()
        with autocast(device):
            logits, extra = method.training_forward_images(images)
            loss = criterion(logits, labels) + sum(w * criterion(aux, labels) for w, aux in extra)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in method.parameters() if p.requires_grad], clip)
        optimizer.step()
    return run


def mhadapter(model: str, batch: int, repeats: int, device: torch.device) -> dict:
    """CLIP-MHAdapter on eight single-label attributes (the GSS shape), AdamW."""
    backbone = create_backbone(model, None)
    task = TaskSpec(tuple(Attribute(f"attribute {i}", ("a", "b", "c"), "a photo of {}.") for i in range(8)))
    method = build_method("mhadapter", backbone, task, {}).to(device)
    images = torch.randn(batch, 3, backbone.image_size, backbone.image_size, device=device)
    labels = torch.randint(0, 3, (batch, 8), device=device)

    def criterion(logits, y):
        return sum(F.cross_entropy(out.float(), y[:, i]) for i, out in enumerate(logits))

    optimizer = build_optimizer(method, TrainConfig(optimizer="adamw", lr=1e-3))
    step = supervised_step(method, images, labels, criterion, optimizer, device, clip=1.0)
    return compare("mhadapter", frozen_forward(backbone, images, device), step, device, batch, repeats,
                   {"model": model, "attributes": 8, "trainable_parameters": method.num_trainable()})


def promptpar(model: str, batch: int, repeats: int, device: torch.device, attributes: int = 26) -> dict:
    """PromptPAR on 26 binary attributes (PA100K), weighted BCE, SGD (the authors' recipe)."""
    backbone = create_backbone(model, None)
    task = TaskSpec(tuple(Attribute(f"attribute {i}", BINARY_CLASSES, template=f"A pedestrian with attribute {i}")
                          for i in range(attributes)), multilabel=True)
    method = build_method("promptpar", backbone, task, {}).to(device)
    images = torch.randn(batch, 3, backbone.image_size, backbone.image_size, device=device)
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 2, (batch, attributes))).to(device)
    loss = AttributeLoss("weighted_bce", [np.array([3, 1])] * attributes)

    def criterion(logits, y):
        return loss([out.float() for out in logits], y)

    optimizer = build_optimizer(method, TrainConfig(optimizer="sgd", lr=8e-3, weight_decay=1e-4))
    step = supervised_step(method, images, labels, criterion, optimizer, device, clip=10.0)
    return compare("promptpar", frozen_forward(backbone, images, device), step, device, batch, repeats,
                   {"model": model, "attributes": attributes, "tokens": method.layout.length,
                    "trainable_parameters": method.num_trainable()})


def microclip(model: str, batch: int, repeats: int, device: torch.device) -> dict:
    """microCLIP's self-training step through SelfTrainer (pseudo-labels, strong-view loss)."""
    backbone = create_backbone(model, None)
    classes = tuple(f"kind {i}" for i in range(10))
    task = TaskSpec((Attribute("species", classes, "a photo of a {} bird."),))
    method = build_method("microclip", backbone, task,
                          {"descriptions": {c: [f"a bird of {c} with marks."] for c in classes}, "crops": CROPS})
    train = microclip_train_defaults(TrainConfig.model_validate({"device": str(device), "batch_size": batch}))
    trainer = SelfTrainer(method, RunConfig(method={"name": "microclip"}, train=train), progress=False)
    optimizer = build_optimizer(method, train)
    size = backbone.image_size
    weak, strong = (torch.randn(batch, 3, size, size, device=device) for _ in range(2))
    crops = torch.randn(batch, CROPS, 3, size, size, device=device)

    step = self_training_step(method, trainer, optimizer, weak, strong, crops)
    return compare("microclip", frozen_forward(backbone, weak, device), step, device, batch, repeats,
                   {"model": model, "crops": CROPS, "trainable_parameters": method.num_trainable()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="the micro model, batch 2, one repeat: checks the code")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_steps.json"))
    args = parser.parse_args()
    quiet()
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.quick:
        plan = [(mhadapter, "clipadapt-micro", 2), (promptpar, "clipadapt-micro", 2), (microclip, "clipadapt-micro", 2)]
        repeats = 1
    else:
        plan = [(mhadapter, "ViT-B-16", 32), (promptpar, "ViT-B-16", 16), (promptpar, "ViT-L-14", 16),
                (microclip, "ViT-B-32", 64)]
        repeats = args.repeats
    started = time.perf_counter()
    rows = []
    for measure, model, batch in plan:
        rows.append(measure(model, batch, repeats, device))
        print(rows[-1], flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
              "repeats": repeats, "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    save_record(record, args.out, width=10)


if __name__ == "__main__":
    main()
