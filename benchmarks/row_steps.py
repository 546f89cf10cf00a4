"""Row (f): a PromptPAR training step and a microCLIP self-training step (weak view +
8 crops without gradient, strong view with), each against a frozen forward of the same
batch, with peak resident memory; ViT-B/32 shapes. Each runs in a fresh process so its
peak memory is its own."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from bench_common import Row, interleaved_medians, peak_rss_mib, quiet
from clipadapt.backbone import create_backbone
from clipadapt.config import RunConfig, TrainConfig
from clipadapt.engine.optim import build_optimizer
from clipadapt.engine.selftrain import SelfTrainer
from clipadapt.methods.microclip.selftraining import microclip_train_defaults
from clipadapt.methods import build_method
from clipadapt.task import Attribute, TaskSpec

ATTRIBUTES, CROPS = 26, 8


def self_training_step(method, trainer: SelfTrainer, optimizer, weak, strong, crops):
    """One microCLIP step as SelfTrainer.fit takes it: pseudo-labels from the weak view and
    the crops (no gradient), the loss on the strong view, backward, clipping, AdamW."""
    def step():
        method.train()
        method.backbone.eval()
        labels = trainer.pseudo_labels(weak, crops).labels
        loss, _ = trainer.loss(strong, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in method.parameters() if p.requires_grad], 1.0)
        optimizer.step()
    return step


def microclip_step(model: str, batch: int, crops: int, repeats: int) -> dict:
    """Median seconds of one self-training step and of a frozen forward of the weak views."""
    quiet()
    torch.manual_seed(0)
    backbone = create_backbone(model, None)
    classes = tuple(f"kind {i}" for i in range(10))
    task = TaskSpec((Attribute("species", classes, "a photo of a {} bird."),))
    method = build_method("microclip", backbone, task,
                          {"descriptions": {c: [f"a bird of {c} with marks."] for c in classes}, "crops": crops})
    cfg = RunConfig(method={"name": "microclip"},
                    train=microclip_train_defaults(TrainConfig.model_validate({"device": "cpu", "batch_size": batch})))
    trainer = SelfTrainer(method, cfg, progress=False)
    optimizer = build_optimizer(method, cfg.train)
    size = backbone.image_size
    weak, strong = torch.randn(batch, 3, size, size), torch.randn(batch, 3, size, size)
    crop_views = torch.randn(batch, crops, 3, size, size)
    rss_model = peak_rss_mib()

    def forward():
        with torch.no_grad():
            backbone.forward_features(weak, None)

    step = self_training_step(method, trainer, optimizer, weak, strong, crop_views)
    seconds = interleaved_medians({"forward": forward, "step": step}, repeats)
    return {"model": model, "batch": batch, "crops": crops, "frozen_forward_s": round(seconds["forward"], 3),
            "step_s": round(seconds["step"], 3), "step_over_forward": round(seconds["step"] / seconds["forward"], 2),
            "peak_rss_mib": round(peak_rss_mib()), "model_built_mib": round(rss_model),
            "trainable_parameters": method.num_trainable()}


def measure(kind: str, model: str, batch: int, repeats: int, attributes: int = ATTRIBUTES) -> dict:
    """The record of one kind of step (PromptPAR: 26 attributes by default, PA100K's count)."""
    if kind == "promptpar":
        from promptpar_step import measure as promptpar

        return promptpar(model, batch, attributes, repeats)
    return microclip_step(model, batch, CROPS, repeats)


def in_fresh_process(kind: str, model: str, batch: int, repeats: int, attributes: int = ATTRIBUTES) -> dict:
    """`measure` in a new interpreter, so the peak memory it reports is its own."""
    done = subprocess.run([sys.executable, __file__, kind, model, str(batch), str(repeats), str(attributes)], check=True,
                          capture_output=True, text=True, timeout=3600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(ctx) -> list[Row]:
    """Measure (f) on ViT-B/32 shapes (quick: the micro model, in this process)."""
    model = ctx.model if ctx.quick else "ViT-B-32"
    batch, repeats = (2, 1) if ctx.quick else (16, min(ctx.repeats, 3))
    measured = measure if ctx.quick else in_fresh_process  # a smoke run needs no clean peak memory
    attributes = 3 if ctx.quick else ATTRIBUTES
    par = measured("promptpar", model, batch, repeats, attributes)
    micro = measured("microclip", model, batch // 2, repeats)
    return [
        Row("f-promptpar", f"PromptPAR step ({model}, batch {batch}, {attributes} attributes) over a frozen forward",
            par["step_over_forward"], "x forward", "time and memory (no target)", None, ctx.command("f"),
            f"step {par['promptpar_step_s']} s, peak RSS {par['peak_rss_mib']['after_train_step']} MiB", par),
        Row("f-microclip", f"microCLIP step ({model}, batch {batch // 2}, weak + strong + {CROPS} crops) over a frozen forward",
            micro["step_over_forward"], "x forward", "time and memory (no target)", None, ctx.command("f"),
            f"step {micro['step_s']} s, peak RSS {micro['peak_rss_mib']} MiB", micro),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["promptpar", "microclip"])
    parser.add_argument("model")
    parser.add_argument("batch", type=int)
    parser.add_argument("repeats", type=int)
    parser.add_argument("attributes", type=int, nargs="?", default=ATTRIBUTES)
    args = parser.parse_args()
    print(json.dumps(measure(args.kind, args.model, args.batch, args.repeats, args.attributes)))
