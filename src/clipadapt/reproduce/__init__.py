"""`clipadapt reproduce`: a paper's table in one command. Each shipped table
(reproduce/tables/<name>.yaml) holds the paper's figures, where they are printed and the
recipe that should give them; the recipe runs as resumable run folders (the bench
runner) and every figure gets our mean ± sd over the seeds and a verdict (docs/reproduce.md).

Names are imported on first use: listing the tables needs neither scikit-learn nor torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "Outcome": "pipeline", "plan_table": "pipeline", "reproduce": "pipeline",
    "Options": "recipe", "Plan": "recipe",
    "PaperTable": "tables", "TableFile": "tables", "load_table": "tables", "shipped_tables": "tables",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'clipadapt.reproduce' has no attribute {name!r}")
    return getattr(importlib.import_module(f"clipadapt.reproduce.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return __all__
