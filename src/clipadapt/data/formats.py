"""Data formats by name, and the one entry point: build_splits(cfg) -> DataSplits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable


from clipadapt.config import DataConfig
from clipadapt.data.bad_images import drop_bad_images
from clipadapt.data.benchmark import read_benchmark
from clipadapt.data.dataset import DataSplits, LabelledImages
from clipadapt.data.fewshot import class_subset, present_classes
from clipadapt.data.folder import read_folder
from clipadapt.data.gss import read_gss
from clipadapt.data.inputs import collect_images
from clipadapt.data.manifest import read_manifest
from clipadapt.data.par import read_pa100k, read_par_pickle, read_peta, read_rap, read_wider
from clipadapt.data.splits import sample_shots, stratified_split
from clipadapt.errors import ClipAdaptError
from clipadapt.registry import Registry
from clipadapt.task import MISSING

LOG = logging.getLogger("clipadapt")

Reader = Callable[[DataConfig], tuple[LabelledImages, LabelledImages | None, LabelledImages | None]]
DATA_FORMATS: Registry[Reader] = Registry("data format")
DATA_FORMATS.register("gss", read_gss)
DATA_FORMATS.register("manifest", read_manifest)
DATA_FORMATS.register("folder", read_folder)
# Pedestrian attribute recognition: one binary attribute per column, -1 = ignored.
DATA_FORMATS.register("pa100k", read_pa100k)
DATA_FORMATS.register("peta", read_peta)
DATA_FORMATS.register("rap", read_rap)
DATA_FORMATS.register("wider", read_wider)
DATA_FORMATS.register("par-pickle", read_par_pickle)
# The field's classification benchmarks (data.dataset) with their split files; Dassl's K-shot subsets.
DATA_FORMATS.register("benchmark", read_benchmark)


def _synthetic_root(cfg: DataConfig, fmt: str, allowed: set[str]) -> Path:
    """data.root of a synthetic format, after checking data.synthetic's option names."""
    if cfg.root is None:
        raise ClipAdaptError(f"data.root is required for format '{fmt}' (where the images are rendered).")
    unknown = set(cfg.synthetic) - allowed
    if unknown:
        raise ClipAdaptError(f"Unknown data.synthetic option(s) {sorted(unknown)}; known: {sorted(allowed)}.")
    return Path(cfg.root).expanduser()


SPLIT_SIZES = {"n_train", "n_test", "seed", "image_size", "label_fraction"}


@DATA_FORMATS.register("synthetic-gss")
def read_synthetic_gss(cfg: DataConfig):
    """Render a GSS-layout folder at data.root (once) and read it with the gss reader."""
    from clipadapt.synthetic.streets import write_gss_dataset

    write_gss_dataset(_synthetic_root(cfg, "synthetic-gss", SPLIT_SIZES), **cfg.synthetic)
    return read_gss(cfg)


@DATA_FORMATS.register("synthetic-par")
def read_synthetic_par(cfg: DataConfig):
    """Render synthetic pedestrian crops at data.root (once) and read them as a multi-label
    manifest (train.csv / test.csv + attributes.json)."""
    from clipadapt.synthetic.pedestrians import write_par_dataset

    root = _synthetic_root(cfg, "synthetic-par", SPLIT_SIZES)
    write_par_dataset(root, **cfg.synthetic)
    manifest_cfg = cfg.model_copy(update={
        "task": "multilabel", "train_manifest": root / "train.csv", "test_manifest": root / "test.csv",
        "attribute_file": cfg.attribute_file or root / "attributes.json", "root": root,
    })
    return read_manifest(manifest_cfg)


@DATA_FORMATS.register("synthetic-finegrained")
def read_synthetic_finegrained(cfg: DataConfig):
    """Render the synthetic fine-grained birds at data.root (once; root/{train,test}/<class>/,
    classnames.txt, descriptions.json) and read them with the folder reader."""
    from clipadapt.synthetic.finegrained import write_finegrained_dataset

    allowed = {"n_train_per_class", "n_test_per_class", "seed", "image_size", "species_tones"}
    write_finegrained_dataset(_synthetic_root(cfg, "synthetic-finegrained", allowed), **cfg.synthetic)
    return read_folder(cfg)


@DATA_FORMATS.register("synthetic-coop")
def read_synthetic_coop(cfg: DataConfig):
    """Render the synthetic birds in CoOp's Caltech101 layout under data.root (once;
    clipadapt.synthetic.coop_layout) and read them as format benchmark does, with its
    split file and Dassl's K-shot draws (data.shots, data.split_seed)."""
    from clipadapt.synthetic.coop_layout import write_coop_birds

    allowed = {"n_train", "n_val", "n_test", "seed", "image_size", "species_tones"}
    root = write_coop_birds(_synthetic_root(cfg, "synthetic-coop", allowed), **cfg.synthetic)
    return read_benchmark(cfg.model_copy(update={"dataset": "caltech101", "root": root}))


read_synthetic_coop.draws_shots = True


def build_splits(cfg: DataConfig) -> DataSplits:
    """Read cfg.format, leave out unusable images (data.on_bad_image=skip), then make the
    stratified validation split (if the source has none), the K-shot training subset
    (if cfg.shots) and the base or novel classes (data.class_subset)."""
    reader = DATA_FORMATS.get(cfg.format)
    train, val, test = reader(cfg)
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
        keep, held = stratified_split(train.labels[:, 0], cfg.val_fraction, cfg.split_seed)
        train, val = train.subset(keep), train.subset(held)
    if cfg.shots and not getattr(reader, "draws_shots", False):  # a reader may draw them its own way
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
