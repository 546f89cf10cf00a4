"""The train.* values a run uses where its config states none: the method's own defaults,
and a batch size that gives small data sets enough optimiser steps.

TrainConfig's defaults are the CLIP-MHAdapter authors' recipe for Global StreetScapes
(tens of thousands of images, batch 256). On a few hundred images that batch gives one
or two optimiser steps per epoch and the five warm-up epochs are five steps, so a run
learns little before early stopping ends it. Where train.batch_size is not set, it is
the largest power of two that gives at least MIN_STEPS_PER_EPOCH steps per epoch,
between MIN_BATCH and the authors' 256 (so large data sets keep 256). Where
train.warmup_epochs is not set either, the warm-up takes at most a fifth of the run's
epochs (the authors' 5 of 100 stays 5; a 10-epoch run warms up for 2, a 3-epoch run not at
all), so a short run does not spend itself warming up.
"""

from __future__ import annotations

from clipadapt.config import RunConfig

MIN_STEPS_PER_EPOCH = 8
MIN_BATCH = 16
MAX_BATCH = 256
WARMUP_SHARE = 5  # an unset warm-up lasts at most epochs // WARMUP_SHARE epochs


def small_data_batch_size(n_train: int) -> int:
    """The default batch size for `n_train` training images.

    >>> small_data_batch_size(168), small_data_batch_size(800), small_data_batch_size(50_000)
    (16, 64, 256)
    """
    batch = MIN_BATCH
    while batch * 2 <= MAX_BATCH and batch * 2 * MIN_STEPS_PER_EPOCH <= n_train:
        batch *= 2
    return batch


def short_run_warmup(warmup_epochs: int, epochs: int) -> int:
    """The default warm-up for a run of `epochs`: at most a fifth of it.

    >>> short_run_warmup(5, 100), short_run_warmup(5, 10), short_run_warmup(5, 3)
    (5, 2, 0)
    """
    return min(warmup_epochs, epochs // WARMUP_SHARE)


def resolve_train_defaults(cfg: RunConfig, method_cls, n_train: int) -> RunConfig:
    """`cfg` with every train.* key it does not set taken from the method's
    `train_defaults`, train.batch_size (when still unset) from `small_data_batch_size`, and
    an unset train.warmup_epochs capped at a fifth of the epochs (`short_run_warmup`)."""
    given = cfg.train.model_fields_set
    update = {k: v for k, v in getattr(method_cls, "train_defaults", {}).items() if k not in given}
    if "batch_size" not in given and "batch_size" not in update:
        update["batch_size"] = small_data_batch_size(n_train)
    if "warmup_epochs" not in given and "warmup_epochs" not in update:
        epochs = update.get("epochs", cfg.train.epochs)
        capped = short_run_warmup(cfg.train.warmup_epochs, epochs)
        if capped != cfg.train.warmup_epochs:
            update["warmup_epochs"] = capped
    if not update:
        return cfg
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=update)})
