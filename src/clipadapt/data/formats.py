"""The one entry point of the data layer: build_splits(cfg) -> DataSplits, whatever the
format. The formats themselves are listed in clipadapt.format_index (DATA_FORMATS, by
name and module), each declared in its own module."""

from __future__ import annotations

import logging

from clipadapt.config import DataConfig
from clipadapt.data.bad_images import drop_bad_images
from clipadapt.data.dataset import DataSplits, LabelledImages
from clipadapt.data.fewshot import class_subset, present_classes
from clipadapt.data.inputs import collect_images
from clipadapt.data.splits import sample_shots, validation_split
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DATA_FORMATS, check_data_settings, data_format
from clipadapt.task import MISSING

LOG = logging.getLogger("clipadapt")


def build_splits(cfg: DataConfig) -> DataSplits:
    """Read cfg.format, leave out unusable images (data.on_bad_image=skip), then make the
    validation split (if the source has none; stratified, or by whole groups of
    data.val_group_column), the K-shot training subset (if cfg.shots) and the base or
    novel classes (data.class_subset)."""
    check_data_settings(cfg)  # as a loaded config was; a DataConfig made in code may not have been
    fmt = data_format(cfg.format)
    train, val, test = fmt.read(cfg)
    skipped: list = []
    if cfg.on_bad_image == "skip":
        # Before the val split and the shots, so both are drawn from usable images only.
        splits = {}
        for name, images in (("train", train), ("val", val), ("test", test)):
            if images is not None:
                images, dropped = drop_bad_images(images, name)
                skipped += dropped
            splits[name] = images
        train, val, test = splits["train"], splits["val"], splits["test"]
    restrict = cfg.restrict_to_present_classes
    if restrict or (restrict is None and cfg.format == "benchmark"):
        train, val, test = present_classes(train, val, test)
    if len(train) == 0:
        left_out = f" ({len(skipped)} unusable images were left out)" if skipped else ""
        raise ClipAdaptError(f"The train split of format '{cfg.format}' is empty{left_out}.")
    if val is None and cfg.val_fraction > 0:
        keep, held = validation_split(train, cfg)  # stratified, or by whole groups (data.val_group_column)
        train, val = train.subset(keep), train.subset(held)
    if cfg.shots and not fmt.draws_shots:  # a reader may draw them its own way
        check_shots(train, cfg.shots)
        train = train.subset(sample_shots(train.labels[:, 0], cfg.shots, cfg.split_seed))
    train, val, test = class_subset(cfg.class_subset, train, val, test)
    splits = DataSplits(train, val, test, skipped)
    report_unlabelled(splits)
    return splits


def report_unlabelled(splits: DataSplits, shown: int = 10) -> None:
    """When some images lack a label for some attribute, one warning with the number of
    labelled images per attribute and split: those are what each attribute trains and is
    scored on, not the split sizes."""
    named = [(name, images) for name, images in (("train", splits.train), ("val", splits.val), ("test", splits.test))
             if images is not None and len(images)]
    counts = {name: (images.labels != MISSING).sum(axis=0) for name, images in named}
    short = [a for a in range(len(splits.task)) if any(counts[name][a] < len(images) for name, images in named)]
    if not short:
        return
    listed = "; ".join(f"{splits.task.attributes[a].name} " + " / ".join(str(int(counts[name][a])) for name, _ in named)
                       for a in short[:shown])
    more = f"; {len(short) - shown} more attributes" if len(short) > shown else ""
    LOG.warning("labelled images per attribute (%s, of %s images): %s%s.", " / ".join(name for name, _ in named),
                " / ".join(str(len(images)) for _, images in named), listed, more)


def check_shots(train: LabelledImages, shots: int) -> None:
    """K-shot needs K training images of every class (after the validation split)."""
    attribute = train.task.attributes[0]
    counts = train.class_counts(0)
    short = [(attribute.classes[k], int(n)) for k, n in enumerate(counts) if n < shots]
    if short:
        listed = ", ".join(f"'{c}' has {n}" for c, n in short[:5])
        raise ClipAdaptError(
            f"data.shots={shots} asks for {shots} training images per class of '{attribute.name}', but {listed} "
            f"(after the validation split). Lower data.shots to at most {int(counts.min())}, lower data.val_fraction, "
            "or add images."
        )


__all__ = ["DATA_FORMATS", "build_splits", "collect_images"]
