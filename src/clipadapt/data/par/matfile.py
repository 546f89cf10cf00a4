"""MATLAB .mat files (v5 through scipy, v7.3 / HDF5 through h5py) as plain Python values.

Both paths give the same shapes, so a reader is written once:

- a numeric or logical array -> numpy array in MATLAB orientation, singleton dimensions
  squeezed (a 1x1 value becomes a 0-d array or a scalar: use `as_indices` / `np.atleast_*`);
- a char array -> str (a multi-row char matrix -> list of str);
- a cell array -> list (column-major order, as MATLAB's linear indexing);
- a struct -> dict of its fields (field order kept); a struct array -> list of dicts.

scipy is tried first; it refuses v7.3 files ("use HDF reader"), and only then is h5py
imported, so h5py is needed only by people who have such files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clipadapt.errors import ClipAdaptError

__all__ = ["as_indices", "as_strings", "get_field", "load_mat"]


def load_mat(path: Path) -> dict[str, Any]:
    """The variables of a .mat file (any version), normalised as the module describes."""
    path = Path(path)
    if not path.is_file():
        raise ClipAdaptError(f"Annotation file not found: {path}. Set data.root to the dataset root "
                             "(or data.par.annotation to the file).")
    import scipy.io

    try:
        raw = scipy.io.loadmat(str(path), simplify_cells=True)
    except NotImplementedError:  # scipy's answer to a v7.3 (HDF5) file
        return _load_hdf5(path)
    except Exception as exc:  # truncated, not a .mat at all, or HDF5 written without MATLAB's header
        if _is_hdf5(path):
            return _load_hdf5(path)
        raise ClipAdaptError(f"Cannot read {path} as a MATLAB .mat file: {exc}. Re-copy the file.") from None
    return {k: _plain(v) for k, v in raw.items() if not k.startswith("__")}


def _plain(value: Any) -> Any:
    """scipy's simplified output -> the module's normal form."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):  # scipy gives struct arrays as lists of dicts
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            if value.ndim == 0:
                return _plain(value.item())
            return [_plain(v) for v in value.ravel(order="F")]
        if value.dtype.kind == "U":
            return str(value.item()) if value.ndim == 0 else [str(s) for s in value.ravel(order="F")]
    return value


# ----------------------------------------------------------------- v7.3 (HDF5)
_NOT_VARIABLES = ("#refs#", "#subsystem#")


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """HDF5's signature sits at offset 0 or after a user block of 512, 1024, 2048 ... bytes."""
    with open(path, "rb") as f:
        head = f.read(4096)
    return any(head[o:o + 8] == _HDF5_SIGNATURE for o in (0, 512, 1024, 2048))


def _load_hdf5(path: Path) -> dict[str, Any]:
    try:
        import h5py
    except ImportError:
        raise ClipAdaptError(
            f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: pip install h5py."
        ) from None
    try:
        with h5py.File(path, "r") as f:
            return {k: _h5_value(f, f[k]) for k in f.keys() if k not in _NOT_VARIABLES}
    except ClipAdaptError:
        raise
    except Exception as exc:
        raise ClipAdaptError(f"Cannot read {path} as a MATLAB v7.3 (HDF5) file: {exc}. Re-copy the file.") from None


def _matlab_class(node) -> str:
    value = node.attrs.get("MATLAB_class", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _h5_value(f, node) -> Any:
    import h5py

    if isinstance(node, h5py.Group):
        return _h5_struct(f, node)
    cls = _matlab_class(node)
    if node.attrs.get("MATLAB_empty", 0):
        # Empty values store their dimensions as data, not contents.
        return "" if cls == "char" else ([] if cls == "cell" else np.empty(0))
    data = node[()]
    if cls == "char":
        rows = np.atleast_2d(np.asarray(data)).T  # HDF5 holds the transpose: one column per row
        strings = ["".join(map(chr, row)) for row in rows]
        return strings[0] if len(strings) == 1 else strings
    if h5py.check_ref_dtype(node.dtype) is not None or cls == "cell":
        # C order over the HDF5 shape is MATLAB's column-major order.
        return [_h5_value(f, f[ref]) for ref in np.asarray(data).ravel()]
    array = np.asarray(data).T
    if cls == "logical":
        array = array.astype(bool)
    return array.squeeze()


def _h5_struct(f, group) -> Any:
    import h5py

    fields = {k: group[k] for k in group.keys()}
    # A struct ARRAY stores each field as an array of references with no MATLAB_class
    # (each element may hold any class); a scalar struct's fields carry their class.
    is_array = fields and all(
        isinstance(node, h5py.Dataset) and h5py.check_ref_dtype(node.dtype) is not None and not _matlab_class(node)
        for node in fields.values()
    )
    if not is_array:
        return {k: _h5_value(f, node) for k, node in fields.items()}
    refs = {k: np.asarray(node[()]).ravel() for k, node in fields.items()}
    count = len(next(iter(refs.values())))
    items = [{k: _h5_value(f, f[refs[k][i]]) for k in fields} for i in range(count)]
    return items[0] if count == 1 else items


# ----------------------------------------------------------------- field access
def get_field(record: Any, names: tuple[str, ...], where: str) -> Any:
    """The first of `names` present in the struct `record` (case-insensitive).

    Raises:
        ClipAdaptError: none is present; the message names what was wanted and lists
            the fields the file has.
    """
    if not isinstance(record, dict):
        raise ClipAdaptError(f"{where} is not a MATLAB struct (got {type(record).__name__}); is this the right file?")
    lookup = {k.lower(): k for k in record}
    for name in names:
        if name.lower() in lookup:
            return record[lookup[name.lower()]]
    wanted = " or ".join(f"'{n}'" for n in names)
    raise ClipAdaptError(f"{where} has no field {wanted}; its fields are {sorted(record)}. Is this the right file?")


def as_strings(value: Any, where: str) -> list[str]:
    """A cell array of strings (or one string) as a list of str."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return [str(v) for v in value.ravel()]
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, list) and len(item) == 1:  # cells nested one deeper
                item = item[0]
            if not isinstance(item, str):
                raise ClipAdaptError(f"{where} should hold strings; found {type(item).__name__}.")
            out.append(item)
        return out
    raise ClipAdaptError(f"{where} should be a cell array of strings; found {type(value).__name__}.")


def as_indices(value: Any, where: str) -> np.ndarray:
    """A MATLAB index vector (1-based, any orientation) as 0-based int64 row indices."""
    array = np.atleast_1d(np.asarray(value)).reshape(-1)
    if array.dtype.kind not in "biuf":
        raise ClipAdaptError(f"{where} should hold row numbers; found {array.dtype}.")
    if array.size and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise ClipAdaptError(f"{where} should hold whole row numbers.")
    array = array.astype(np.int64)
    if array.size and array.min() < 1:
        raise ClipAdaptError(f"{where} holds the row number {array.min()}; MATLAB indices start at 1.")
    return array - 1
