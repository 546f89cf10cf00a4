"""Label-free self-training: the generic step plan for `engine.loop.train_epochs`.

A method whose `training_plan` is "self_training" gives, through `method.self_training()`,
the parts of its step (microCLIP's: `methods/microclip/selftraining.py`): the views of an
unlabelled image, the pseudo-labels made without gradient from some of them, the loss
learned from the others, each epoch's statistics and its frozen heads' predictions. This
module runs them: the seeded order of the images, the device and its mixed precision, the
cosine lr per iteration, the optimiser, the epochs.

Labels of the training images are never used for learning: the trainer is handed
unlabelled images; hidden labels, when a caller passes them, only score the pseudo-labels
in the per-epoch statistics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from clipadapt.config import RunConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.engine.optim import build_optimizer
from clipadapt.engine.loop import EpochTotals, train_epochs
from clipadapt.engine.schedule import lr_at_epoch, set_lr
from clipadapt.engine.sources import ImageBatches, make_transform
from clipadapt.bars import progress_bar
from clipadapt.engine.devices import autocast_for, resolve_device
from clipadapt.threads import share_cores
from clipadapt.errors import ClipAdaptError
from clipadapt.task import MISSING


@dataclass
class SelfTrainResult:
    history: list[dict] = field(default_factory=list)


class SelfTrainer:
    """Runs a method's label-free self-training on a device (CPU fp32, CUDA bf16 autocast).

    `method` has training_plan "self_training"; `method.self_training(autocast)` gives the
    parts of its step (`plan`); `cfg.train` carries the optimiser recipe (the method's
    `train_defaults` fill the keys a config leaves unset).
    """

    def __init__(self, method, cfg: RunConfig, progress: bool = True):
        if getattr(method, "training_plan", None) != "self_training":
            raise ClipAdaptError(f"Self-training runs a label-free method; '{getattr(method, 'name', method)}' "
                                 "trains with labels (`clipadapt train`).")
        self.method = method
        self.cfg = cfg
        share_cores(cfg.train.threads)  # a fair share of the CPU's cores, read once (threads.py)
        self.device = resolve_device(cfg.train.device)
        self.progress = progress
        self.method.to(self.device)
        self.plan = method.self_training(self.autocast)

    def autocast(self):
        return autocast_for(self.device)

    @property
    def log_marginal(self) -> torch.Tensor | None:
        """The running class marginal (log) of the plan's balance term, when it keeps one
        (microCLIP's fairness term); None before the first step or without one."""
        return getattr(self.plan, "log_marginal", None)

    def views(self, images: LabelledImages):
        """The plan's views of `images`, seeded by train.seed."""
        return self.plan.views(images, self.cfg.train.seed)

    # ------------------------------------------------------------------ one step
    def pseudo_labels(self, *inputs):
        """The plan's pseudo-labels (no gradient) from the labelling views of a batch."""
        return self.plan.pseudo_labels(*inputs)

    def loss(self, *inputs_and_targets) -> tuple[torch.Tensor, dict]:
        """The plan's loss on the learning views of a batch and their targets: (loss, parts)."""
        return self.plan.loss(*inputs_and_targets)

    # ------------------------------------------------------------------ the loop
    def fit(self, images: LabelledImages, hidden_labels: np.ndarray | None = None,
            targets: Literal["pseudo", "true"] = "pseudo") -> SelfTrainResult:
        """Self-train on `images` (their labels are ignored); `hidden_labels` [N] or [N, 1]
        (-1 = unknown) only score the pseudo-labels in the history. No labels select an
        epoch: the method ends in its last epoch's state.

        targets="true" is the diagnostic upper bound, NOT label-free: the same recipe, views
        and trainable parts, with the loss's targets the `hidden_labels` instead of the
        pseudo-labels. What it reaches is the most self-training could reach with perfect
        pseudo-labels; when it stays near zero-shot, the features leave no headroom."""
        cfg, method = self.cfg.train, self.method
        n = len(images)
        if n == 0:
            raise ClipAdaptError("Self-training needs at least one training image; the train split is empty.")
        if targets not in ("pseudo", "true"):
            raise ClipAdaptError(f"Self-training targets must be 'pseudo' or 'true', got {targets!r}.")
        hidden = None if hidden_labels is None else np.asarray(hidden_labels, dtype=np.int64).reshape(n, -1)[:, 0]
        if targets == "true" and (hidden is None or (hidden == MISSING).any()):
            unknown = n if hidden is None else int((hidden == MISSING).sum())
            raise ClipAdaptError(f"The true-label upper bound needs the label of every training image; {unknown} of {n} "
                                 "have none. Run it on a labelled copy of the data, or self-train without it.")
        if cfg.epochs == 0:
            return SelfTrainResult()
        optimizer = build_optimizer(method, cfg)
        plan = SelfTrainingSteps(self, images, hidden, None if targets == "pseudo" else torch.as_tensor(hidden))
        train_epochs(plan, optimizer, [p for p in method.parameters() if p.requires_grad],
                     epochs=range(cfg.epochs), total=cfg.epochs, grad_clip=cfg.grad_clip, progress=self.progress,
                     description="adapt")
        method.eval()
        return plan.result

    # ------------------------------------------------------------------ frozen heads
    @torch.no_grad()
    def head_predictions(self, images: LabelledImages, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Predicted classes of every head the plan names (`plan.head_names`) on `images`
        (centre crop), with the model as it is now; called before training, the frozen
        ones are zero-shot CLIP."""
        method = self.method
        method.eval()
        source = ImageBatches(images, make_transform(method.backbone, train=False), num_workers=self.cfg.train.num_workers)
        out: dict[str, list] = {name: [] for name in self.plan.head_names}
        with progress_bar(self.progress) as bar:
            job = bar.add_task("zero-shot", total=len(images), info="")
            for batch, idx in source.batches(np.arange(len(images)), batch_size or self.cfg.train.eval_batch_size):
                for name, predicted in self.plan.head_predictions(batch.to(self.device, non_blocking=True)).items():
                    out[name].append(predicted)
                bar.advance(job, len(idx))
        return {name: np.concatenate(parts) if parts else np.zeros(0, np.int64) for name, parts in out.items()}


class SelfTrainingSteps:
    """A self-training step for `engine.loop.train_epochs`: the plan's views of unlabelled
    images in a seeded order, its pseudo-labels without gradient, its loss, a cosine lr per
    iteration; after each epoch the plan's statistics of what its pseudo-labels recorded.
    No labels select: the last epoch is kept."""

    def __init__(self, trainer: SelfTrainer, images: LabelledImages, hidden: np.ndarray | None,
                 truth: torch.Tensor | None):
        cfg = trainer.cfg.train
        self.trainer, self.hidden, self.truth = trainer, hidden, truth
        self.dataset = trainer.views(images)
        self.steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.result = SelfTrainResult()

    def start_epoch(self, epoch: int):
        trainer, cfg = self.trainer, self.trainer.cfg.train
        self.started = time.perf_counter()
        trainer.method.train()
        trainer.method.backbone.eval()  # CLIP has no dropout / batch norm to switch, but stay explicit
        self.dataset.set_epoch(epoch)
        order = torch.randperm(len(self.dataset),
                               generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)).tolist()
        self.seen: dict[str, list] = {"idx": []}
        return DataLoader(Subset(self.dataset, order), batch_size=cfg.batch_size, shuffle=False,
                          num_workers=cfg.num_workers)

    def set_lr(self, optimizer, epoch: int, step: int) -> float:
        cfg = self.trainer.cfg.train
        lr = lr_at_epoch(step, cfg.lr, self.total_steps, 0, 0.0, cfg.min_lr)  # cosine per iteration
        set_lr(optimizer, lr)
        return lr

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        trainer = self.trainer
        labelling, learning, idx = trainer.plan.split(batch)
        device = trainer.device
        labelling = [t.to(device, non_blocking=True) for t in labelling]
        learning = [t.to(device, non_blocking=True) for t in learning]
        pl = trainer.pseudo_labels(*labelling)
        target = pl.labels if self.truth is None else self.truth[idx].to(device)
        loss, parts = trainer.loss(*learning, target)
        self.seen["idx"].append(idx.numpy())
        for key, value in pl.recorded().items():
            self.seen.setdefault(key, []).append(value.cpu().numpy())
        return loss, {**{key: 0.0 for key in trainer.plan.loss_parts}, **parts}

    def end_epoch(self, totals: EpochTotals) -> tuple[bool, str]:
        seen = {key: np.concatenate(parts) for key, parts in self.seen.items()}
        row = self.trainer.plan.epoch_row(totals, seen, self.hidden)
        row["seconds"] = round(time.perf_counter() - self.started, 2)
        self.result.history.append(row)
        acc = row.get("pseudo_label_accuracy")
        epochs = self.trainer.cfg.train.epochs
        return False, (f"epoch {totals.epoch + 1}/{epochs} loss {row['train_loss']:.3f}"
                       + (f" pseudo-acc {acc:.3f}" if acc is not None else ""))
