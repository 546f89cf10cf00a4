"""clipadapt: adapt frozen CLIP models to attribute and fine-grained classification.

The package is layered along one data path (see docs/architecture.md):
data -> backbone -> features -> methods -> engine -> metrics / predict.
"""

__version__ = "0.1.0"

# Before anything imports torch: idle OpenMP workers sleep instead of spinning, so a run
# beside other work does not burn the cores it waits on (clipadapt/threads.py).
from clipadapt.threads import prefer_passive_waiting  # noqa: E402

prefer_passive_waiting()

from clipadapt.errors import ClipAdaptError  # noqa: E402

__all__ = ["ClipAdaptError", "__version__"]
