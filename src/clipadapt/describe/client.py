"""A small client for OpenAI-compatible chat-completions endpoints, on urllib alone.

OpenAI, vLLM, llama.cpp's server, Ollama, LM Studio, TGI and most gateways speak the
same `POST {base}/chat/completions` protocol, so one client serves them all and the
project needs no SDK. Transient failures (connection refused or reset, timeouts, 429,
5xx) are retried with exponential backoff, honouring the server's Retry-After; any
other answer is final and becomes a ClipAdaptError that says what to change.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Callable

from clipadapt.errors import ClipAdaptError

__all__ = ["ChatClient", "chat_completions_url"]

# A server asking for a longer pause than this is rate-limiting by the hour or day;
# waiting that long silently would look like a hang, so the wait is capped.
MAX_RETRY_AFTER_S = 300.0


def chat_completions_url(endpoint: str) -> str:
    """`{endpoint}/chat/completions`; an endpoint that already ends in /chat/completions is kept."""
    url = (endpoint or "").strip().rstrip("/")
    if not url.lower().startswith(("http://", "https://")):
        raise ClipAdaptError(f"--endpoint must be an http(s) URL such as http://localhost:8000/v1, got '{endpoint}'.")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class _Transient(Exception):
    """A failure worth another try; `wait` is the server's Retry-After, if it sent one."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class ChatClient:
    """Send chat messages to one model behind an OpenAI-compatible endpoint.

    endpoint: the API base, e.g. "http://localhost:8000/v1" or "https://api.openai.com/v1".
    api_key: sent as "Authorization: Bearer ..." when given (local servers need none);
    api_key_env only names where it came from, for error messages.
    retries: extra attempts after the first on transient failures; the k-th retry waits
    backoff * 2**(k-1) seconds (at most max_backoff) unless the server sent Retry-After.
    `sleep` is injectable so that tests can observe the waits without spending them.

    >>> ChatClient("http://localhost:8000/v1", "qwen2.5-7b").complete(
    ...     [{"role": "user", "content": "Say hi."}])  # doctest: +SKIP
    'Hi!'
    """

    def __init__(self, endpoint: str, model: str, api_key: str | None = None, api_key_env: str | None = None,
                 timeout: float = 60.0, retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0,
                 temperature: float = 0.7, sleep: Callable[[float], None] = time.sleep):
        if not model or not model.strip():
            raise ClipAdaptError("--model is empty; give the model name the server serves (e.g. gpt-4o-mini).")
        if timeout <= 0:
            raise ClipAdaptError(f"--timeout must be positive, got {timeout}.")
        if retries < 0:
            raise ClipAdaptError(f"--retries must be 0 or more, got {retries}.")
        self.endpoint = endpoint.strip().rstrip("/")
        self.url = chat_completions_url(endpoint)
        self.model = model.strip()
        self.api_key = api_key or None
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.temperature = float(temperature)
        self.sleep = sleep
        self.requests_sent = 0

    def complete(self, messages: list[dict]) -> str:
        """The assistant's text for `messages`, after retrying transient failures."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature}).encode("utf-8")
        attempts = self.retries + 1
        last = ""
        for attempt in range(attempts):
            try:
                return self._content(self._post(body))
            except _Transient as exc:
                last = exc.reason
                if attempt + 1 == attempts:
                    break
                delay = exc.wait if exc.wait is not None else min(self.max_backoff, self.backoff * 2 ** attempt)
                self.sleep(max(0.0, delay))
        raise ClipAdaptError(
            f"Could not get an answer from {self.url} after {attempts} attempt{'s' if attempts > 1 else ''} "
            f"(last error: {last}). Check that the server is running and reachable, and that --endpoint is its "
            f"API base (e.g. http://localhost:8000/v1); --retries and --timeout allow more patience.")

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "clipadapt-describe"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        self.requests_sent += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            self._raise_for_status(exc)
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Transient(f"no answer within {self.timeout:g} s") from None
            raise _Transient(str(reason)) from None
        except (socket.timeout, TimeoutError):
            raise _Transient(f"no answer within {self.timeout:g} s") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            # Resets and half-closed connections surface here, during the read.
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for_status(self, exc: urllib.error.HTTPError) -> None:
        status = exc.code
        detail = _error_detail(exc)
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}{detail}", _retry_after(exc.headers.get("Retry-After")))
        if status in (401, 403):
            env = self.api_key_env or "the API-key variable"
            if self.api_key:
                fix = f"check the key in the environment variable {env} (--api-key-env names another variable)"
            else:
                fix = f"no key was sent because {env} is not set: export {env}=<your key>, or name another variable with --api-key-env"
            raise ClipAdaptError(f"{self.url} refused the request (HTTP {status}{detail}); {fix}.")
        if status == 404:
            raise ClipAdaptError(f"{self.url} answered HTTP 404{detail}; check --endpoint (the API base usually ends "
                                 f"in /v1) and that the server serves the model '{self.model}' (--model).")
        raise ClipAdaptError(f"{self.url} rejected the request (HTTP {status}{detail}); check --model "
                             f"('{self.model}') and the server's documentation.")

    def _content(self, raw: bytes) -> str:
        snippet = raw[:200].decode("utf-8", "replace")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ClipAdaptError(f"{self.url} answered with something that is not JSON ({snippet!r}); is --endpoint an "
                                 "OpenAI-compatible API base (e.g. http://localhost:8000/v1)?") from None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ClipAdaptError(f"{self.url} answered JSON without choices[0].message.content ({snippet!r}); "
                                 "the endpoint must speak the OpenAI chat-completions protocol.") from None
        if not isinstance(content, str):
            raise ClipAdaptError(f"{self.url} answered with no text content ({snippet!r}); the model may have refused "
                                 "or answered with a tool call; try another --model.")
        return content


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The server's own error message (OpenAI style {"error": {"message": ...}}), if any."""
    try:
        raw = exc.read()[:2000].decode("utf-8", "replace")
    except Exception:  # the body is a courtesy; a failure to read it must not hide the status
        return ""
    message = raw.strip()
    try:
        data = json.loads(raw)
        err = data.get("error", data) if isinstance(data, dict) else data
        message = err.get("message") or err.get("detail") or message if isinstance(err, dict) else str(err)
    except (json.JSONDecodeError, AttributeError):
        pass
    message = " ".join(str(message).split())
    if len(message) > 200:
        message = message[:197] + "..."
    return f": {message}" if message else ""


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds (decimals accepted) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)
