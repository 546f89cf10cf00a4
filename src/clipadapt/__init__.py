"""clipadapt: adapt frozen CLIP models to attribute and fine-grained classification.

The Python API (docs/python.md) is the names in `__all__`:

>>> import clipadapt
>>> run = clipadapt.load("runs/pets")                           # doctest: +SKIP
>>> run.predict(["cat.jpg", "dog.png"])                         # doctest: +SKIP

They are imported on first use, so `import clipadapt` stays light (no torch). The package
is layered along one data path (see docs/architecture.md):
data -> backbone -> features -> methods -> engine -> workflow -> api / cli.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

from clipadapt.errors import (  # noqa: E402
    AtChanceWarning, ClassTextWarning, ClipAdaptError, ClipAdaptWarning, NoProgressWarning,
)

# public name -> the module that defines it (imported on first use)
_HOMES = {
    "Run": "clipadapt.api.run", "load": "clipadapt.api.run",
    "train": "clipadapt.api.workflows", "adapt": "clipadapt.api.workflows",
    "evaluate": "clipadapt.api.workflows", "bench": "clipadapt.api.workflows",
    "create_backbone": "clipadapt.api.catalogue", "list_backbones": "clipadapt.api.catalogue",
    "list_methods": "clipadapt.api.catalogue", "list_formats": "clipadapt.api.catalogue",
    "RunCard": "clipadapt.engine.card", "RunConfig": "clipadapt.config",
}

__all__ = [
    "AtChanceWarning", "ClassTextWarning", "ClipAdaptError", "ClipAdaptWarning", "NoProgressWarning", "Run", "RunCard",
    "RunConfig", "__version__", "adapt", "bench", "create_backbone", "evaluate", "list_backbones", "list_formats",
    "list_methods", "load", "train",
]

if TYPE_CHECKING:  # what type checkers and editors see
    from clipadapt.api.catalogue import create_backbone, list_backbones, list_formats, list_methods
    from clipadapt.api.run import Run, load
    from clipadapt.api.workflows import adapt, bench, evaluate, train
    from clipadapt.config import RunConfig
    from clipadapt.engine.card import RunCard


def __getattr__(name: str):
    """Import the module that defines `name` on first use and keep the name here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'clipadapt' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
