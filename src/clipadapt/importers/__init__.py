"""Importers: bring checkpoints trained elsewhere into clipadapt run folders, safely.

- `import_mhadapter_checkpoint`: the CLIP-MHAdapter authors' Dassl checkpoints.
- `safe_torch_load`: read torch files without executing pickled code.
"""

from clipadapt.importers.dassl_mhadapter import AUTHORS_KEYS, import_mhadapter_checkpoint, read_dassl_checkpoint
from clipadapt.safe_pickle import InertObject, safe_torch_load

__all__ = ["AUTHORS_KEYS", "InertObject", "import_mhadapter_checkpoint", "read_dassl_checkpoint", "safe_torch_load"]
