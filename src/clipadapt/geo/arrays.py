"""Columns of a pyarrow batch as numpy arrays, with one clear error per wrong type."""

from __future__ import annotations

import numpy as np

from clipadapt.errors import ClipAdaptError


def _numeric(type_) -> bool:
    import pyarrow as pa

    return pa.types.is_floating(type_) or pa.types.is_integer(type_) or pa.types.is_null(type_)


def floats(batch, name: str, what: str = "numbers") -> np.ndarray:
    """A numeric column as float64, nulls as NaN; ClipAdaptError for a text column."""
    import pyarrow as pa

    column = batch.column(name)
    if not _numeric(column.type):
        raise ClipAdaptError(f"column '{name}' holds {column.type}, not {what}.")
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def ok_mask(batch, name: str = "ok") -> np.ndarray:
    """The `ok` column as booleans (null = not ok); text 'true'/'1' counts as ok."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = batch.column(name)
    if pa.types.is_boolean(column.type):
        flags = column
    elif _numeric(column.type):
        flags = pc.not_equal(column, 0)
    else:
        flags = pc.is_in(pc.utf8_lower(column.cast(pa.string())), value_set=pa.array(["true", "1", "yes"]))
    return np.asarray(flags.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def class_indices(batch, name: str, classes: tuple[str, ...]) -> np.ndarray:
    """The index of each row's top class in `classes` (-1 when null or not one of them);
    compared as text, so class names that look like numbers match either way."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.index_in(batch.column(name).cast(pa.string()), value_set=pa.array(list(classes), pa.string()))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def decisions(batch, name: str) -> np.ndarray:
    """A multi-label 0/1 decision column as int64 (-1 where missing). ClipAdaptError for
    text: a single-label top class where the 0/1 decision belongs."""
    import pyarrow as pa

    column = batch.column(name)
    if not _numeric(column.type) and not pa.types.is_boolean(column.type):
        raise ClipAdaptError(f"column '{name}' holds text (a single-label run's top class?), but the '{name}:p' "
                             f"column makes '{name}' multi-label: it must hold the 0/1 decision. Pass the table as "
                             "`clipadapt predict` wrote it.")
    values = column.cast(pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.int64)
