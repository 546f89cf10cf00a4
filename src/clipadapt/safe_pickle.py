"""Read torch checkpoint files written by other projects without executing pickled code.

A torch file is a pickle, and a pickle may name any importable callable to run while it
loads. `torch.load(weights_only=True)` admits only tensors and plain containers, which
covers most state dicts, but training frameworks such as Dassl also store what their
optimiser and scheduler hold: numpy scalars (the validation score) and, with Dassl's
warm-up schedulers, the wrapped torch scheduler and optimiser *objects*. For those files
`safe_torch_load` retries with its own unpickler that:

- admits a short allow-list of plain data builders (containers, tensor/storage rebuild
  functions, numpy scalars and arrays, latin-1 byte strings);
- turns pickled optimiser / scheduler objects into inert `InertObject`s that keep their
  saved attributes as data and never run (nor import) the original class;
- refuses every other name with a ClipAdaptError, before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import codecs
import importlib
import pickle
import sys
import types
import zipfile
from pathlib import Path

import torch

from clipadapt.errors import ClipAdaptError

__all__ = ["InertObject", "safe_torch_load"]

# builtins a pickle may build plain data with (never getattr, eval, exec, open, ...)
_SAFE_BUILTINS = ("set", "frozenset", "slice", "complex", "dict", "list", "tuple", "bytearray",
                  "int", "float", "bool", "str", "bytes")
# torch._utils functions that rebuild tensors and parameters from storages
_TENSOR_REBUILDERS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3",
                      "_rebuild_parameter", "_rebuild_parameter_with_state")
# Dassl classes that appear inside its checkpoints (optimisers, warm-up schedulers);
# they become InertObjects, so Dassl need not be installed and none of its code runs.
_DASSL_INERT = {
    ("dassl.optim.lr_scheduler", "_BaseWarmupScheduler"),
    ("dassl.optim.lr_scheduler", "ConstantWarmupScheduler"),
    ("dassl.optim.lr_scheduler", "LinearWarmupScheduler"),
    ("dassl.optim.radam", "RAdam"),
    ("dassl.optim.radam", "PlainRAdam"),
    ("dassl.optim.radam", "AdamW"),
}
_NUMPY_MULTIARRAY = {"numpy.core.multiarray", "numpy._core.multiarray"}


class InertObject:
    """Stand-in for an optimiser or scheduler object pickled inside a checkpoint.

    Unpickling normally calls the class's own `__setstate__`; this class only stores
    the saved attributes in `saved_state`, so loading runs none of the original code.
    `origin` names the class the file asked for.
    """

    origin = ""

    def __new__(cls, *args, **kwargs):
        # pickle's NEWOBJ calls cls.__new__(cls, *args); the arguments are data, ignore them
        return object.__new__(cls)

    def __setstate__(self, state) -> None:
        self.saved_state = state

    def __repr__(self) -> str:
        return f"<inert {self.origin}>"


_inert_classes: dict[str, type[InertObject]] = {}


def _inert_class(module: str, name: str) -> type[InertObject]:
    """One InertObject subclass per original class, so a repr says what was stood in for."""
    origin = f"{module}.{name}"
    if origin not in _inert_classes:
        _inert_classes[origin] = type(name, (InertObject,), {"origin": origin})
    return _inert_classes[origin]


def _latin1_encode(text, encoding: str = "latin1"):
    """Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); allow only that."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"byte string with encoding {encoding!r} refused")
    return codecs.encode(text, "latin1")


def _modern_name(module: str, name: str) -> tuple[str, str]:
    """Python 2 names used by protocol-2 pickles (`__builtin__.dict`) -> Python 3 names."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _numpy_global(module: str, name: str):
    """numpy scalar / array / dtype builders (numpy 1.x and 2.x spell the module differently)."""
    import numpy

    if module in _NUMPY_MULTIARRAY and name in ("scalar", "_reconstruct"):
        for candidate in ("numpy._core.multiarray", "numpy.core.multiarray"):
            try:
                return getattr(importlib.import_module(candidate), name)
            except ImportError:
                continue
    if module == "numpy" and name in ("dtype", "ndarray"):
        return getattr(numpy, name)
    return None


def _torch_global(module: str, name: str):
    """Tensor rebuild functions, storage types, dtypes and torch.Size."""
    # vars() rather than getattr: torch's module __getattr__ lazily imports submodules
    if module == "torch._utils" and name in _TENSOR_REBUILDERS:
        return vars(torch._utils).get(name)
    if module == "torch":
        found = vars(torch).get(name)
        if isinstance(found, torch.dtype) or found is torch.Size:
            return found
        if name.endswith("Storage") and isinstance(found, type):
            return found
    return None


def _inert_global(module: str, name: str):
    """Optimiser / scheduler classes -> InertObject stand-ins (others -> None).

    torch.optim classes are recognised through modules torch has already imported, so
    nothing new is imported on a file's behalf.
    """
    if (module, name) in _DASSL_INERT:
        return _inert_class(module, name)
    if module == "torch.optim" or module.startswith("torch.optim."):
        loaded = sys.modules.get(module)
        found = vars(loaded).get(name) if loaded is not None else None
        bases = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
        if isinstance(found, type) and issubclass(found, bases):
            return _inert_class(module, name)
    return None


def _allowed_global(module: str, name: str):
    """What a pickle may reference by name, or None when it is refused."""
    if module == "builtins" and name in _SAFE_BUILTINS:
        return getattr(builtins, name)
    if module == "collections" and name in ("OrderedDict", "defaultdict"):
        return getattr(collections, name)
    if module == "_codecs" and name == "encode":
        return _latin1_encode
    if module.startswith("torch"):
        return _torch_global(module, name) or _inert_global(module, name)
    if module.startswith("numpy"):
        return _numpy_global(module, name)
    return _inert_global(module, name)


def _restricted_pickle_module(source: str) -> types.ModuleType:
    """A stand-in for the `pickle` module, for torch.load(pickle_module=...).

    torch subclasses `pickle_module.Unpickler` (adding storage handling) and defers every
    other global to our `find_class`; legacy files also go through `pickle_module.load`.
    """

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            module, name = _modern_name(module, name)
            found = _allowed_global(module, name)
            if found is None:
                raise ClipAdaptError(
                    f"{source} wants to run {module}.{name} while loading; refused. clipadapt reads only "
                    "tensors, plain containers and numbers from checkpoint files and never runs code from them. "
                    "If you trust the file, load it where it was written and save its 'state_dict' alone "
                    "(torch.save(ckpt['state_dict'], ...) or safetensors), then import that file."
                )
            return found

    def load(file, **kwargs):
        return RestrictedUnpickler(file, **kwargs).load()

    module = types.ModuleType("clipadapt_restricted_pickle")
    module.Unpickler = RestrictedUnpickler
    module.load = load
    module.UnpicklingError = pickle.UnpicklingError
    return module


def _refuse_torchscript(path: Path) -> None:
    """torch.load hands TorchScript archives to torch.jit.load, which runs their code."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        if any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in archive.namelist()):
            raise ClipAdaptError(
                f"{path} is a TorchScript archive (a compiled program), not a checkpoint of weights; refused. "
                "Export the model's state_dict and import that instead."
            )


def _unreadable(path: Path, exc: BaseException) -> ClipAdaptError:
    return ClipAdaptError(
        f"Could not read {path} as a torch checkpoint ({type(exc).__name__}: {exc}). Is it a complete "
        "file written by torch.save? Re-copy it, or point to the model.pth.tar-N / model-best.pth.tar file."
    )


def _restricted_load(path: Path):
    # The restriction lives in the unpickler's find_class: with an explicit pickle_module,
    # torch routes every global through it (weights_only must stay unset: torch refuses
    # weights_only=True together with a custom pickle_module).
    module = _restricted_pickle_module(str(path))
    try:
        return torch.load(path, map_location="cpu", pickle_module=module)
    except ClipAdaptError:
        raise
    except Exception as exc:  # truncated zip, bad storage record, ...
        raise _unreadable(path, exc) from None


def safe_torch_load(path: Path | str) -> dict:
    """Load a torch checkpoint file (zip or legacy format) into CPU memory, safely.

    Tries `torch.load(weights_only=True)` first; when torch refuses because the file
    holds more than plain tensors (Dassl's numpy scores, scheduler and optimiser
    objects), retries with the restricted unpickler described in this module.

    Raises:
        ClipAdaptError: the file is missing, unreadable, not a dict, a TorchScript
            archive, or names code outside the allow-list ("... wants to run X ...").
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ClipAdaptError(f"Checkpoint file not found: {path}.")
    _refuse_torchscript(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        obj = _restricted_load(path)  # more than plain data inside: look closer, safely
    except Exception as exc:
        raise _unreadable(path, exc) from None
    if not isinstance(obj, dict):
        raise ClipAdaptError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict.")
    return obj
