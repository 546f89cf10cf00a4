"""Read the field's annotation pickles (dataset_all.pkl, pad.pkl, ...) without running code.

A pickle names callables that run while it loads, so loading an arbitrary .pkl runs
arbitrary code. These files hold only plain data: dicts (EasyDict), lists, strings,
numbers and numpy arrays. `load_plain_pickle` admits exactly the builders of those,
the same allow-list idea as `clipadapt.safe_pickle` but without torch (this
module sits in the data layer and must not import the model side):

- builtins that build plain values (dict, list, tuple, set, str, int, range, ...);
- numpy's array / scalar / dtype rebuilders;
- `_codecs.encode(..., "latin1")`, which protocol-2 pickles use for byte strings;
- `easydict.EasyDict`, mapped by name to a dict stand-in (the class itself is never
  imported nor run), converted to a plain dict after loading.

Every other name is refused with a ClipAdaptError before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import collections
import importlib
import pickle
from pathlib import Path
from typing import Any

from clipadapt.errors import ClipAdaptError

__all__ = ["load_plain_pickle"]

_PLAIN_BUILTINS = frozenset({
    "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "complex", "bool",
    "range",  # "Rethinking of PAR" stores label_idx.extra as a range
    "slice",
})
_NUMPY_BUILDERS = {
    # (module as numpy 2 / numpy 1 spell it, name) -> attribute path inside numpy
    "multiarray._reconstruct": ("multiarray", "_reconstruct"),
    "multiarray.scalar": ("multiarray", "scalar"),
    "numeric._frombuffer": ("numeric", "_frombuffer"),  # protocol-5 arrays
}
_EASYDICT = ("easydict", "EasyDict")


class _AttrDictStandIn(dict):
    """Takes the place of easydict.EasyDict while loading.

    EasyDict keeps every item also as an instance attribute, so its pickle carries that
    attribute dict as state; plain dicts cannot take state, hence this stand-in, whose
    only behaviour is to keep missing keys of that (data-only) state.
    """

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            for key, value in state.items():
                self.setdefault(key, value)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"byte string with encoding {encoding!r} refused")
    return codecs.encode(text, "latin1")


def _numpy_builder(module: str, name: str):
    import numpy

    if module == "numpy" and name in ("dtype", "ndarray"):
        return getattr(numpy, name)
    for prefix in ("numpy._core.", "numpy.core."):
        if module.startswith(prefix):
            key = f"{module[len(prefix):]}.{name}"
            if key in _NUMPY_BUILDERS:
                submodule, attribute = _NUMPY_BUILDERS[key]
                for home in ("numpy._core", "numpy.core"):  # whichever this numpy has
                    try:
                        return getattr(importlib.import_module(f"{home}.{submodule}"), attribute)
                    except (ImportError, AttributeError):
                        continue
    return None


def _allowed(module: str, name: str):
    if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 spellings
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    if module == "builtins" and name in _PLAIN_BUILTINS:
        return getattr(builtins, name)
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict
    if module == "_codecs" and name == "encode":
        return _latin1_encode
    if (module, name) == _EASYDICT:
        return _AttrDictStandIn
    if module == "numpy" or module.startswith("numpy."):
        return _numpy_builder(module, name)
    return None


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # latin1 keeps numpy arrays of Python 2 pickles intact
        self.source = source

    def find_class(self, module: str, name: str):
        found = _allowed(module, name)
        if found is None:
            raise ClipAdaptError(
                f"{self.source} wants to run {module}.{name} while loading; refused. clipadapt reads PAR "
                "annotation pickles only when they hold plain data (dicts / EasyDict, lists, strings, numbers, "
                "numpy arrays) and never runs code from them. If you trust the file, load it where it was made and "
                "re-save its fields as plain dicts, lists and numpy arrays."
            )
        return found


def _plain(value: Any) -> Any:
    """EasyDict stand-ins -> dict, recursively through containers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def load_plain_pickle(path: Path | str) -> Any:
    """The contents of a data-only pickle file, refusing any code it names.

    Raises:
        ClipAdaptError: the file is missing, unreadable, or names anything outside the
            allow-list ("... wants to run X ...").
    """
    path = Path(path)
    if not path.is_file():
        raise ClipAdaptError(f"Pickle file not found: {path}.")
    try:
        with path.open("rb") as f:
            return _plain(_PlainUnpickler(f, str(path)).load())
    except ClipAdaptError:
        raise
    except Exception as exc:  # truncated file, not a pickle, a refused byte encoding ...
        raise ClipAdaptError(f"Cannot read {path} as a pickle of plain data ({type(exc).__name__}: {exc}).") from None
