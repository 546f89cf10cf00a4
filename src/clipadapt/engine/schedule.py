"""Learning-rate schedule: linear warm-up from warmup_lr, then cosine to min_lr (per epoch)."""

from __future__ import annotations

import math


def lr_at_epoch(epoch: int, base_lr: float, epochs: int, warmup_epochs: int, warmup_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate for 0-based `epoch`.

    >>> round(lr_at_epoch(0, 5e-4, 100, 5, 1e-5), 6)
    1e-05
    >>> lr_at_epoch(5, 5e-4, 100, 5, 1e-5)
    0.0005
    """
    if epoch < warmup_epochs:
        return warmup_lr + (base_lr - warmup_lr) * epoch / warmup_epochs
    span = max(epochs - warmup_epochs, 1)
    progress = min((epoch - warmup_epochs) / span, 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def set_epoch_lr(optimizer, epoch: int, cfg) -> float:
    """Set every group's lr for `epoch` (a group may carry its own lr_scale and
    warmup_epochs); returns the unscaled lr of the run's own warm-up."""
    for group in optimizer.param_groups:
        warmup = group.get("warmup_epochs", cfg.warmup_epochs)
        base = lr_at_epoch(epoch, cfg.lr, cfg.epochs, warmup, cfg.warmup_lr, cfg.min_lr)
        group["lr"] = base * group.get("lr_scale", 1.0)
    return lr_at_epoch(epoch, cfg.lr, cfg.epochs, cfg.warmup_epochs, cfg.warmup_lr, cfg.min_lr)
