"""The synthetic-* data formats: render a data set under data.root on first use (the same
options render it again at once), then read it with the reader of the layout it copies.
The options in data.synthetic are the renderer's keyword arguments."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from clipadapt.config import DataConfig
from clipadapt.data.benchmark import read_benchmark
from clipadapt.data.folder import check_one_attribute, read_folder
from clipadapt.data.gss import read_gss
from clipadapt.data.manifest import read_manifest
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DataFormat
from clipadapt.synthetic.coop_layout import write_coop_birds
from clipadapt.synthetic.finegrained import write_finegrained_dataset
from clipadapt.synthetic.pedestrians import write_par_dataset
from clipadapt.synthetic.streets import write_gss_dataset

WRITERS: dict[str, Callable[..., Path]] = {
    "synthetic-gss": write_gss_dataset, "synthetic-par": write_par_dataset,
    "synthetic-finegrained": write_finegrained_dataset, "synthetic-coop": write_coop_birds,
}


def renderer_options(writer: Callable[..., Path]) -> list[str]:
    """The renderer's keyword options: its parameters after the folder (the class list of
    the CoOp layout is fixed: the birds the others render)."""
    names = list(inspect.signature(writer).parameters)[1:]
    return [n for n in names if n != "classes"]


def check_synthetic_settings(cfg: DataConfig) -> None:
    """data.synthetic names only options its renderer has."""
    known = renderer_options(WRITERS[cfg.format])
    unknown = sorted(set(cfg.synthetic) - set(known))
    if unknown:
        raise ClipAdaptError(f"Unknown data.synthetic option(s) {unknown} for format '{cfg.format}'; known: {known}.")


def check_synthetic_class_folders(cfg: DataConfig) -> None:
    """The birds' formats: the renderer's options, and one attribute (the species)."""
    check_synthetic_settings(cfg)
    check_one_attribute(cfg)


def _render(cfg: DataConfig) -> Path:
    """Render the format's data set under data.root (once) and return the folder it wrote."""
    if cfg.root is None:
        raise ClipAdaptError(f"data.root is required for format '{cfg.format}' (where the images are rendered).")
    check_synthetic_settings(cfg)
    return WRITERS[cfg.format](Path(cfg.root).expanduser(), **cfg.synthetic)


def read_synthetic_gss(cfg: DataConfig):
    """Street views in the GSS layout, read with the gss reader."""
    _render(cfg)
    return read_gss(cfg)


def read_synthetic_par(cfg: DataConfig):
    """Pedestrian crops, read as a multi-label manifest (train.csv / test.csv + attributes.json)."""
    root = _render(cfg)
    return read_manifest(cfg.model_copy(update={
        "task": "multilabel", "train_manifest": root / "train.csv", "test_manifest": root / "test.csv",
        "attribute_file": cfg.attribute_file or root / "attributes.json", "root": root,
    }))


def read_synthetic_finegrained(cfg: DataConfig):
    """Look-alike birds (root/{train,test}/<class>/, classnames.txt, descriptions.json),
    read with the folder reader."""
    _render(cfg)
    return read_folder(cfg)


def read_synthetic_coop(cfg: DataConfig):
    """The birds in CoOp's Caltech101 layout, read as format benchmark does, with its split
    file and Dassl's K-shot draws (data.shots, data.split_seed)."""
    folder = _render(cfg)
    return read_benchmark(cfg.model_copy(update={"dataset": "caltech101", "root": folder}))


SYNTHETIC_GSS = DataFormat(read=read_synthetic_gss, check=check_synthetic_settings, reads=("synthetic",),
                           single_label=True, summary="rendered street views with the eight GSS attributes")
SYNTHETIC_PAR = DataFormat(read=read_synthetic_par, check=check_synthetic_settings,
                           reads=("synthetic", "attribute_file"),  # attribute_file: other sentences
                           summary="rendered pedestrian crops with 12 binary attributes")
SYNTHETIC_FINEGRAINED = DataFormat(read=read_synthetic_finegrained, check=check_synthetic_class_folders,
                                   reads=("synthetic",), single_label=True,
                                   summary="rendered look-alike birds in class folders, with descriptions")
SYNTHETIC_COOP = DataFormat(read=read_synthetic_coop, check=check_synthetic_class_folders, reads=("synthetic",),
                            single_label=True, draws_shots=True,
                            summary="the rendered birds in CoOp's Caltech101 layout, with a split file")
