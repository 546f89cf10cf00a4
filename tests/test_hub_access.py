"""Downloads that cannot happen fail at once, with one message naming the way out; a file
the hub's cache holds still loads offline."""

from __future__ import annotations

import logging

import pytest

from clipadapt import hub_access
from clipadapt.backbone import create_backbone
from clipadapt.errors import ClipAdaptError


@pytest.fixture
def unreachable_hub(monkeypatch, tmp_path):
    """A hub endpoint on a closed local port (refused at once), an empty cache, a fresh probe."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub_access, "_reachable", {})


def test_weights_that_cannot_be_downloaded_fail_at_once_naming_the_embedded_model(unreachable_hub, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ClipAdaptError) as raised:
        create_backbone("ViT-B-32", "openai")
    message = str(raised.value)
    assert "The weights 'openai' of ViT-B-32 must be downloaded once" in message
    assert "127.0.0.1 cannot be reached" in message
    assert "backbone.pretrained: embedded" in message and "backbone.pretrained=<path" in message
    # one message: no retry storm (the hub's HTTP client never ran) and no library warning before it
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert hub_access._reachable == {"127.0.0.1": False}


def test_offline_loads_read_the_cache_and_restore_the_hub_setting(unreachable_hub):
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    seen = []
    assert hub_access.from_hub("a file", lambda: seen.append(constants.HF_HUB_OFFLINE) or "from the cache",
                               fix="unused") == "from the cache"
    assert seen == [True] and constants.HF_HUB_OFFLINE == before


def test_hf_hub_offline_is_honoured_without_probing(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_access, "_reachable", {})
    monkeypatch.setattr(hub_access.socket, "create_connection",
                        lambda *a, **k: pytest.fail("probed the network although HF_HUB_OFFLINE=1"))
    with pytest.raises(ClipAdaptError, match="while HF_HUB_OFFLINE is set.*Fix it"):
        hub_access.from_hub("A tokenizer", lambda: (_ for _ in ()).throw(OSError("not cached")), fix="Fix it.")


def test_a_reachable_hub_loads_over_the_network(monkeypatch):
    monkeypatch.setattr(hub_access, "hub_reachable", lambda: True)
    from huggingface_hub import constants

    assert hub_access.from_hub("a file", lambda: constants.HF_HUB_OFFLINE, fix="unused") is constants.HF_HUB_OFFLINE
