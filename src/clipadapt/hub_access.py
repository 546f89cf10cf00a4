"""Files from the Hugging Face hub (open_clip weights, SigLIP tokenizers, transformers
folders, timm blocks): from the network when it answers, from the local cache when it
does not, and one clear error within seconds when neither has them.

Without this, huggingface_hub retries an unreachable host with back-off (about 50 s for
weights, 60 s for a tokenizer, each retry logged twice) before failing. Here the host is
probed once per process (name lookup and a TCP connection, PROBE_SECONDS at most); when it
does not answer, the load runs in the hub's offline mode, which reads the cache only.

Ground floor: imports no layer of clipadapt (huggingface_hub only when a load needs it).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from contextlib import contextmanager
from typing import Callable, TypeVar
from urllib.parse import urlparse

from clipadapt.errors import ClipAdaptError

T = TypeVar("T")
PROBE_SECONDS = 3.0
EMBEDDED_ROUTE = ("To try clipadapt without a download, use the embedded tiny CLIP (backbone.name: clipadapt-tiny, "
                  "backbone.pretrained: embedded; a fixture that knows about 200 words, docs/backbones.md).")
_reachable: dict[str, bool] = {}


def hub_host() -> str:
    """The hub's host name (HF_ENDPOINT, when set, names a mirror)."""
    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


def _offline_by_setting() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """Whether the hub answers a TCP connection within `timeout` seconds (asked once per
    process and host; False at once when HF_HUB_OFFLINE is set)."""
    if _offline_by_setting():
        return False
    host = hub_host()
    if host not in _reachable:
        answered: list[bool] = []

        def probe() -> None:  # in a thread: a name lookup has no timeout of its own
            try:
                socket.create_connection((host, 443), timeout=timeout).close()
                answered.append(True)
            except OSError:
                answered.append(False)

        worker = threading.Thread(target=probe, daemon=True)
        worker.start()
        worker.join(timeout)
        _reachable[host] = bool(answered and answered[0])
    return _reachable[host]


@contextmanager
def hub_offline():
    """huggingface_hub (and transformers) read only their cache inside this block."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub comes with open_clip
        constants = None
    before = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # read at call time by the hub's HTTP session
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = before
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _libraries_silent():
    """No library log lines for an offline load: open_clip logs its own 'failed to download'
    error before raising, and the one message that follows says it all."""
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)


def from_hub(what: str, load: Callable[[], T], fix: str) -> T:
    """`load()` (which may download `what` from the hub): over the network when the hub
    answers; otherwise from the cache, or one ClipAdaptError naming `what` and `fix`.
    An error of `load` itself while online propagates for the caller to word."""
    if hub_reachable():
        return load()
    reason = "HF_HUB_OFFLINE is set" if _offline_by_setting() else \
        f"{hub_host()} cannot be reached (probed for up to {PROBE_SECONDS:g} s)"
    with hub_offline(), _libraries_silent():
        try:
            return load()
        except Exception as exc:  # not in the cache: the offline hub's own error is long and generic
            raise ClipAdaptError(f"{what} must be downloaded once from the Hugging Face hub, and it is not in the "
                                 f"local cache while {reason} ({type(exc).__name__}). {fix}") from None
