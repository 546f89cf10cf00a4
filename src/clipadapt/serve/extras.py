"""The libraries `clipadapt serve` needs beyond clipadapt's own (the `serve` extra): a missing
one is one clear line, not an ImportError traceback."""

from __future__ import annotations

from importlib.util import find_spec

from clipadapt.errors import ClipAdaptError

# import name -> what pip calls it
LIBRARIES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "multipart": "python-multipart",
             "prometheus_client": "prometheus_client"}


def require_serve_libraries() -> None:
    """Raise ClipAdaptError naming every missing library of the `serve` extra."""
    missing = [package for module, package in LIBRARIES.items() if find_spec(module) is None]
    if missing:
        raise ClipAdaptError(f"clipadapt serve needs {', '.join(missing)} (not installed); "
                             "pip install 'clipadapt[serve]'.")
