"""The train.* values a run uses where its config states none: the method's own defaults,
and a batch size that gives small data sets enough optimiser steps.

TrainConfig's defaults are the CLIP-MHAdapter authors' recipe for Global StreetScapes
(tens of thousands of images, batch 256). On a few hundred images that batch gives one
or two optimiser steps per epoch and the five warm-up epochs are five steps, so a run
learns little before early stopping ends it. Where train.batch_size is not set, it is
the largest power of two that gives at least MIN_STEPS_PER_EPOCH steps per epoch,
between MIN_BATCH and the authors' 256 (so large data sets keep 256).
"""

from __future__ import annotations

from clipadapt.config import RunConfig

MIN_STEPS_PER_EPOCH = 8
MIN_BATCH = 16
MAX_BATCH = 256


def small_data_batch_size(n_train: int) -> int:
    """The default batch size for `n_train` training images.

    >>> small_data_batch_size(168), small_data_batch_size(800), small_data_batch_size(50_000)
    (16, 64, 256)
    """
    batch = MIN_BATCH
    while batch * 2 <= MAX_BATCH and batch * 2 * MIN_STEPS_PER_EPOCH <= n_train:
        batch *= 2
    return batch


def resolve_train_defaults(cfg: RunConfig, method_cls, n_train: int) -> RunConfig:
    """`cfg` with every train.* key it does not set taken from the method's
    `train_defaults`, and train.batch_size (when still unset) from `small_data_batch_size`."""
    given = cfg.train.model_fields_set
    update = {k: v for k, v in getattr(method_cls, "train_defaults", {}).items() if k not in given}
    if "batch_size" not in given and "batch_size" not in update:
        update["batch_size"] = small_data_batch_size(n_train)
    if not update:
        return cfg
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=update)})
