"""PETA (SPEC 2): root/PETA.mat + images root/images/00001.png ... (row i -> i+1, 5 digits).

`peta.data` is [19000, 4 + 105]: four id columns, then the 105 attribute labels named
by `peta.attribute`. The field evaluates 35 of them, in "group order" (head, upper
body, lower body, footwear, accessories, age, gender) as "Rethinking of PAR" and
PromptPAR do; `PETA_35` is that list. `peta.partion_attribute` (sic) holds 5 random
partitions of 9500 / 1900 / 7600 train / val / test rows (1-based).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipadapt.config import DataConfig
from clipadapt.data.par.matfile import as_strings, get_field, load_mat
from clipadapt.data.par.options import ParOptions, check_par_settings, dataset_root, par_options, under_root
from clipadapt.data.par.partitions import as_splits, choose, split_rows
from clipadapt.data.par.table import ParTable, to_splits
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DataFormat

ID_COLUMNS = 4  # leading columns of peta.data that are identifiers, not labels

# The 35 evaluated attributes, group order (the field's standard order).
PETA_35 = (
    "accessoryHat", "accessoryMuffler", "accessoryNothing", "accessorySunglasses", "hairLong",
    "upperBodyCasual", "upperBodyFormal", "upperBodyJacket", "upperBodyLogo", "upperBodyPlaid",
    "upperBodyShortSleeve", "upperBodyThinStripes", "upperBodyTshirt", "upperBodyOther", "upperBodyVNeck",
    "lowerBodyCasual", "lowerBodyFormal", "lowerBodyJeans", "lowerBodyShorts", "lowerBodyShortSkirt",
    "lowerBodyTrousers",
    "footwearLeatherShoes", "footwearSandals", "footwearShoes", "footwearSneaker",
    "carryingBackpack", "carryingOther", "carryingMessengerBag", "carryingNothing", "carryingPlasticBags",
    "personalLess30", "personalLess45", "personalLess60", "personalLarger60",
    "personalMale",
)


def read_peta(cfg: DataConfig, options: ParOptions | dict | None = None):
    """(train, val, test) LabelledImages of PETA partition `split_index`; the 35
    standard attributes unless data.attributes names others (any of the 105)."""
    opts = par_options(cfg, options)
    root = dataset_root(cfg, "peta", "PETA.mat and images/")
    return to_splits(peta_table(root, opts), cfg, opts.check_images)


PETA_FORMAT = DataFormat(read=read_peta, check=check_par_settings, reads=("par",),
                         summary="PETA: PETA.mat and images/ (35 attributes)")


def peta_table(root: Path, opts: ParOptions) -> ParTable:
    path = under_root(root, opts.annotation) or root / "PETA.mat"
    peta = get_field(load_mat(path), ("peta",), path.name)
    where = f"{path.name}:peta"
    data = np.atleast_2d(np.asarray(get_field(peta, ("data",), where)))
    names = as_strings(get_field(peta, ("attribute",), where), f"{where}.attribute")
    if data.shape[1] != ID_COLUMNS + len(names):
        raise ClipAdaptError(
            f"{where}.data has {data.shape[1]} columns; expected {ID_COLUMNS} id columns + {len(names)} attributes."
        )
    partitions = get_field(peta, ("partion_attribute", "partition_attribute", "partition", "partion"), where)
    part = choose(partitions, opts.split_index, f"{where}.partion_attribute")
    rows = split_rows(part, ("train", "val", "test"), f"{where}.partion_attribute[{opts.split_index}]")
    known = {n.lower() for n in names}
    missing = [n for n in PETA_35 if n.lower() not in known]
    return ParTable(
        dataset="PETA",
        source=path,
        image_names=[f"{i + 1:05d}.png" for i in range(data.shape[0])],
        labels=data[:, ID_COLUMNS:],
        names=names,
        default_columns=None if missing else _standard_columns(names),
        default_problem=(
            f"{path}: the standard PETA attributes {missing} are not among its attribute names {names}. "
            "Name the attributes to use with data.attributes."
        ),
        value_map={0: 0, 1: 1},
        splits=as_splits(rows),
        image_root=under_root(root, opts.image_dir) or root / "images",
        sentences="peta",
    )


def _standard_columns(names: list[str]) -> list[int]:
    """Columns of PETA_35, in group order, found by name."""
    lookup = {n.lower(): c for c, n in enumerate(names)}
    return [lookup[n.lower()] for n in PETA_35]
