"""The one training loop, and the selection and checkpoint helpers its users share.

Supervised training (`engine.trainer.Runner`) and label-free self-training
(`engine.selftrain.SelfTrainer`) differ in what a step computes and what an epoch reports,
not in how a step is taken. The loop owns that part: the learning rate of every step, the
backward pass, gradient clipping, the optimiser step, the running loss and the progress
bar. A `StepPlan` supplies the rest (Lightning's split between the loop and the model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Protocol

import torch

from clipadapt.bars import progress_bar
from clipadapt.engine.checkpoint import load_state_strict
from clipadapt.run_files import RunFiles

# A validation loss "improves" when it falls below its lowest value so far by more than this
# fraction (float noise on a flat loss must not keep a run going).
LOSS_MIN_DELTA = 1e-4


def apply_gradients(optimizer, loss: torch.Tensor, trainable: list[torch.Tensor], grad_clip: float | None) -> None:
    """One optimiser step on `loss`: zero the gradients, backward, clip their global norm to
    `grad_clip` (when set), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
    optimizer.step()


@dataclass
class EpochTotals:
    """What the loop counted over one epoch: the lr of its last step, the number of
    batches, and the sums of the loss and of each named part a step reported."""

    epoch: int
    lr: float = 0.0
    batches: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, loss: float, parts: dict[str, float]) -> None:
        self.batches += 1
        for key, value in {"loss": loss, **parts}.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def mean(self, key: str = "loss") -> float:
        """The epoch's mean of `key` (0 for an epoch without batches or without that part)."""
        return self.sums.get(key, 0.0) / max(self.batches, 1)


class StepPlan(Protocol):
    """What one kind of training computes; `train_epochs` takes the steps."""

    steps_per_epoch: int | None  # for the progress bar; None: the bar moves once per epoch

    def start_epoch(self, epoch: int) -> Iterable:
        """Put the model in training mode, seed the epoch and return its batches."""

    def set_lr(self, optimizer, epoch: int, step: int) -> float:
        """Set every parameter group's learning rate for `step` (0-based over the run) of
        `epoch`; return the run's own (unscaled) lr."""

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one batch (with gradient) and named parts to average over the epoch."""

    def end_epoch(self, totals: EpochTotals) -> tuple[bool, str]:
        """Record the epoch (history, validation, selection); return (stop now, progress info)."""


def train_epochs(plan: StepPlan, optimizer, trainable: list[torch.Tensor], *, epochs: range, total: int,
                 grad_clip: float | None, progress: bool, description: str = "train") -> None:
    """Run `plan` for `epochs` (a range: a resumed run starts past 0) out of `total`."""
    step = epochs.start * (plan.steps_per_epoch or 0)
    with progress_bar(progress) as bar:
        job = bar.add_task(description, total=total, completed=epochs.start, info="")

        def show_step(epoch: int, loss: float) -> None:
            if plan.steps_per_epoch:
                bar.update(job, advance=1 / plan.steps_per_epoch, info=f"epoch {epoch + 1}/{total} loss {loss:.3f}")

        for epoch in epochs:
            totals = run_epoch(plan, optimizer, trainable, grad_clip, epoch, step, on_step=show_step)
            step += totals.batches
            stop, info = plan.end_epoch(totals)
            bar.update(job, completed=epoch + 1, info=info)
            if stop:
                break


def run_epoch(plan: StepPlan, optimizer, trainable: list[torch.Tensor], grad_clip: float | None, epoch: int,
              step: int = 0, on_step=None) -> EpochTotals:
    """The steps of one epoch of `plan` (its lr, loss, gradients); `step`: the run's step
    count before it. `on_step(epoch, loss)` after each step (the progress bar)."""
    totals = EpochTotals(epoch)
    for batch in plan.start_epoch(epoch):
        totals.lr = plan.set_lr(optimizer, epoch, step + totals.batches)
        loss, parts = plan.loss(batch)
        apply_gradients(optimizer, loss, trainable, grad_clip)
        value = float(loss.detach())  # one device sync per step
        totals.add(value, parts)
        if on_step is not None:
            on_step(epoch, value)
    return totals


class Selection:
    """Which epoch a run keeps, and when it stops early.

    The best monitored score is kept; a tie (a flat macro-F1 on small data) goes to the lower
    validation loss. Patience counts an epoch against the run only when neither the score
    nor the validation loss improved, so a run whose loss still falls while its score is
    flat is not stopped. Without a patience the run never stops early.
    """

    def __init__(self, patience: int | None):
        self.patience = patience
        self.patience_left = patience
        self.best_epoch, self.best_score = -1, None
        self.lowest_loss = self.chosen_loss = math.inf

    def restore(self, history: list[dict], best_epoch: int, best_score: float | None,
                patience_left: int | None) -> None:
        """Continue from a resumed run's position (its history and kept epoch)."""
        self.best_epoch, self.best_score, self.patience_left = best_epoch, best_score, patience_left
        losses = [row["val_loss"] for row in history if row.get("val_loss") is not None]
        self.lowest_loss = min(losses, default=math.inf)
        chosen = history[best_epoch - 1] if 1 <= best_epoch <= len(history) else {}
        self.chosen_loss = chosen.get("val_loss", math.inf)

    def update(self, epoch: int, score: float, val_loss: float = math.inf) -> bool:
        """Record 1-based `epoch`'s score; True when it becomes the kept epoch."""
        loss_improved = val_loss < self.lowest_loss * (1 - LOSS_MIN_DELTA)
        self.lowest_loss = min(self.lowest_loss, val_loss)
        if (self.best_score is None or score > self.best_score
                or (score == self.best_score and val_loss < self.chosen_loss)):
            self.best_score, self.best_epoch, self.chosen_loss = score, epoch, val_loss
            self.patience_left = self.patience
            return True
        if loss_improved:
            self.patience_left = self.patience
        elif self.patience_left is not None:
            self.patience_left -= 1
        return False

    @property
    def exhausted(self) -> bool:
        """Patience is spent: stop."""
        return self.patience_left is not None and self.patience_left <= 0


class BestCheckpoint:
    """The kept epoch's trained tensors in the run folder's checkpoint (written through its
    `RunState`, which writes nothing on a rank > 0): saved when an epoch is selected, read
    back strictly at the end (a missing or foreign key is an error)."""

    def __init__(self, files, method):
        self.files = files  # engine.run_state.RunState (or the workflow's RunFolder)
        self.method = method

    def save(self) -> None:
        self.files.save_best(self.method.trained_state())

    def restore(self, device: torch.device) -> None:
        load_state_strict(self.method, self.files.read_best(device), source=str(self.files.file(RunFiles.CHECKPOINT)))
