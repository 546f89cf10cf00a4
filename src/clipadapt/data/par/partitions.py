"""The PAR files' partitions: several numbered splits, each naming its train/val/test rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from clipadapt.data.par.matfile import as_indices
from clipadapt.errors import ClipAdaptError


def choose(partitions: Any, index: int, where: str) -> Any:
    """Partition `index` (0-based) of a list of partitions; a single one counts as a list of one."""
    items = partitions if isinstance(partitions, list) else [partitions]
    if not items:
        raise ClipAdaptError(f"{where} holds no partition.")
    if index >= len(items):
        raise ClipAdaptError(
            f"data.par.split_index is {index} but {where} holds {len(items)} partition(s), numbered 0-{len(items) - 1}."
        )
    return items[index]


def _role(field: str) -> str | None:
    """'train_index' -> 'train', 'trainval_index' -> 'trainval', 'val' -> 'val', ..."""
    key = field.lower()
    for role in ("trainval", "train", "val", "test"):
        if key.startswith(role):
            return role
    return None


def split_rows(record: Any, positional: tuple[str, ...], where: str) -> dict[str, np.ndarray]:
    """0-based rows of each split of one partition (a MATLAB struct of 1-based index vectors).

    Fields are recognised by name (train*, val*, trainval*, test*). A struct whose field
    names say nothing is read by position in `positional` order (the field's scripts
    index these structs by position, so that is the documented layout); a bare list of
    vectors is read the same way.
    """
    if isinstance(record, dict):
        roles = {_role(k): k for k in record}
        if None not in roles and len(roles) == len(record):
            return {role: as_indices(record[k], f"{where}.{k}") for role, k in roles.items()}
        values = list(record.values())
    elif isinstance(record, list):
        values = record
    else:
        raise ClipAdaptError(f"{where} should be a struct of index vectors; found {type(record).__name__}.")
    if len(values) < len(positional):
        raise ClipAdaptError(
            f"{where} should hold the {', '.join(positional)} index vectors; it holds {len(values)} value(s)."
        )
    return {role: as_indices(v, f"{where}[{i}]") for i, (role, v) in enumerate(zip(positional, values))}


def as_splits(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    """train / val / test for to_splits: train+val files keep both; a trainval-only file
    (RAPv1) trains on trainval and has no val (the caller may hold one out)."""
    if "train" in rows:
        return {"train": rows["train"], "val": rows.get("val"), "test": rows.get("test")}
    if "trainval" in rows:
        return {"train": rows["trainval"], "val": None, "test": rows.get("test")}
    raise ClipAdaptError(f"A partition names no train or trainval rows (it has {sorted(rows)}).")
