"""`clipadapt serve`: a JSON API and a web page for predictions on single images and small
batches, on the standard library's HTTP server (no extra dependencies)."""

from clipadapt.serve.model import ServedModel
from clipadapt.serve.server import ServeSettings, make_server

__all__ = ["ServeSettings", "ServedModel", "make_server"]
