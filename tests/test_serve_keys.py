"""`clipadapt serve`'s API keys: every API route refuses a request without a valid key (401),
the open routes stay open, the comparison is constant-work over every configured key, and
a key never shows up in a log or an answer."""

from __future__ import annotations

import hmac
import logging

import pytest
from test_report_support import make_run
from test_serve_support import Running, png_bytes, request

import clipadapt.serve.keys as keys_module
from clipadapt.errors import ClipAdaptError
from clipadapt.serve import ServedModel, ServeSettings
from clipadapt.serve.keys import KeyCheck, load_keys, read_key_file

KEYS = ("first-key-Zq81xv", "second-key-Pw27nm")
WRONG = "third-key-Xx00yy"
API = [("GET", "/api/info"), ("POST", "/api/predict"), ("GET", "/metrics")]
OPEN = ["/", "/healthz", "/readyz", "/openapi.json", "/docs"]


@pytest.fixture(scope="module")
def model(tmp_path_factory, micro_backbone) -> ServedModel:
    return ServedModel(make_run(tmp_path_factory.mktemp("keys") / "run", micro_backbone, evaluated=False))


@pytest.fixture(scope="module")
def guarded(model):
    with Running(model, ServeSettings(), keys=KEYS, log_level="debug") as running:
        yield running.ready()


def call(running, method: str, path: str, headers: dict | None = None):
    data = png_bytes() if method == "POST" else None
    return request(running.url + path, data, headers, with_headers=True)


@pytest.mark.parametrize("method, path", API)
def test_every_api_route_needs_a_valid_key(guarded, method, path):
    for headers in ({}, {"Authorization": f"Bearer {WRONG}"}, {"X-API-Key": WRONG}, {"Authorization": f"Basic {KEYS[0]}"}):
        status, answer, got = call(guarded, method, path, headers)
        assert status == 401, (headers, answer)
        assert "API key" in answer["error"] and got["WWW-Authenticate"] == "Bearer"
    for headers in ({"Authorization": f"Bearer {KEYS[0]}"}, {"Authorization": f"bearer {KEYS[1]}"}, {"X-API-Key": KEYS[1]}):
        status, answer, _ = call(guarded, method, path, headers)
        assert status == 200, (headers, answer)


@pytest.mark.parametrize("path", OPEN)
def test_the_page_probes_and_the_api_description_stay_open(guarded, path):
    assert call(guarded, "GET", path)[0] == 200


def test_the_comparison_runs_once_per_configured_key_even_when_the_first_matches(guarded, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", counting)
    assert call(guarded, "GET", "/api/info", {"Authorization": f"Bearer {KEYS[0]}"})[0] == 200
    assert calls == [(bytes, bytes)] * len(KEYS)  # the first key matched; the second was compared all the same
    calls.clear()
    assert call(guarded, "GET", "/api/info", {"X-API-Key": WRONG})[0] == 401
    assert len(calls) == len(KEYS)
    calls.clear()
    assert KeyCheck(KEYS + ("x",)).accepts([KEYS[0]]) and len(calls) == 3


def test_a_key_never_reaches_a_log_or_an_answer(model, caplog):
    """With uvicorn at debug level: no record, and no answer (header or body), holds a key,
    whether the key was right or wrong."""
    caplog.set_level(logging.DEBUG)
    seen = []
    with Running(model, ServeSettings(), keys=KEYS, log_level="debug") as running:
        running.ready()
        for headers in ({"Authorization": f"Bearer {KEYS[0]}"}, {"X-API-Key": KEYS[1]}, {"Authorization": f"Bearer {WRONG}"},
                        {"X-API-Key": WRONG}):
            for method, path in API + [("POST", "/api/predict?overlay=1"), ("GET", "/nope")]:
                status, answer, got = call(running, method, path, headers)
                seen.append(f"{status} {answer} {dict(got)}")
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args}" for r in caplog.records)
    assert caplog.records, "nothing was logged: the check would pass for the wrong reason"
    for key in (*KEYS, WRONG):
        assert key not in logged
        assert not [s for s in seen if key in s]


def test_keys_from_options_the_environment_and_a_file(tmp_path):
    file = tmp_path / "keys.txt"
    file.write_text("# the web team\nkey-from-file-1\n\n   # rotated in May\n  key-from-file-2  \n", encoding="utf-8")
    assert read_key_file(file) == ["key-from-file-1", "key-from-file-2"]
    found = load_keys(["key-a", "key-a"], file, environ={"CLIPADAPT_API_KEY": "key-env-1, key-env-2"})
    assert found == ("key-a", "key-env-1", "key-env-2", "key-from-file-1", "key-from-file-2")
    assert load_keys([], None, environ={}) == ()
    (tmp_path / "empty.txt").write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(ClipAdaptError, match="holds no key"):
        read_key_file(tmp_path / "empty.txt")
    with pytest.raises(ClipAdaptError, match="does not exist"):
        read_key_file(tmp_path / "missing.txt")
    with pytest.raises(ClipAdaptError, match="one word"):
        load_keys(["two words"], None, environ={})


def test_without_keys_the_api_is_open(model):
    with Running(model, ServeSettings()) as running:
        assert request(running.url + "/api/info")[0] == 200
        assert request(running.url + "/metrics")[0] == 200
