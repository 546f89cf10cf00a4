"""`clipadapt serve`: a JSON API and a web page for predictions on single images and small
batches, as an ASGI service (FastAPI on uvicorn) that batches requests arriving together.

`create_app(model, settings, keys)` builds the FastAPI app (uvicorn runs it for the CLI,
Ray Serve can deploy it); `ServedModel` is the loaded run. Names are imported on first
use, so importing this package pulls in neither torch nor the web libraries.
"""

from __future__ import annotations

from importlib import import_module

_WHERE = {"ServeSettings": "settings", "ServedModel": "model", "create_app": "app", "Server": "runner",
          "require_serve_libraries": "extras"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'clipadapt.serve' has no attribute {name!r}")
    return getattr(import_module(f"clipadapt.serve.{_WHERE[name]}"), name)
