"""clipadapt: adapt frozen CLIP models to attribute and fine-grained classification.

The package is layered along one data path (see docs/architecture.md):
data -> backbone -> features -> methods -> engine -> metrics / predict.
"""

__version__ = "0.1.0"

from clipadapt.errors import ClipAdaptError  # noqa: E402

__all__ = ["ClipAdaptError", "__version__"]
