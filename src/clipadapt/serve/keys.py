"""API keys: where they come from (`--api-key`, CLIPADAPT_API_KEY, `--api-key-file`) and how a
request's key is checked.

A client sends its key as `Authorization: Bearer KEY` or `X-API-Key: KEY`. The check
compares it with every configured key with `hmac.compare_digest` and never stops at the
first match, so the time it takes says nothing about which key (or how much of one)
matched. Keys are never logged or echoed: messages say how many keys there are, not which.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from clipadapt.errors import ClipAdaptError

ENV = "CLIPADAPT_API_KEY"


def _checked(key: str, source: str) -> str:
    key = key.strip()
    if not key:
        raise ClipAdaptError(f"An empty API key in {source}: give at least one character.")
    if any(c.isspace() or not c.isprintable() for c in key):
        raise ClipAdaptError(f"An API key in {source} holds a space or control character; a key is one word "
                             "(e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))').")
    return key


def read_key_file(path: Path) -> list[str]:
    """The keys of a file: one per line; blank lines and lines starting with # are skipped."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClipAdaptError(f"--api-key-file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClipAdaptError(f"--api-key-file {path} cannot be read ({exc}).") from None
    keys = [_checked(line, f"--api-key-file {path} line {number}")
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise ClipAdaptError(f"--api-key-file {path} holds no key (one per line; # starts a comment).")
    return keys


def load_keys(given: Iterable[str] = (), key_file: Path | None = None,
              environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Every configured key: `--api-key` values, the CLIPADAPT_API_KEY variable (keys separated
    by spaces or commas) and the lines of `key_file`; duplicates once. Empty: no keys."""
    environ = os.environ if environ is None else environ
    keys = [_checked(k, "--api-key") for k in given]
    keys += [_checked(k, f"the environment variable {ENV}") for k in environ.get(ENV, "").replace(",", " ").split()]
    if key_file is not None:
        keys += read_key_file(key_file)
    return tuple(dict.fromkeys(keys))


class KeyCheck:
    """Whether a request carries one of the configured keys (no keys: every request passes)."""

    def __init__(self, keys: Sequence[str] = ()):
        self._keys = [k.encode("utf-8") for k in keys]

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def accepts(self, presented: Iterable[str]) -> bool:
        """True when one of the `presented` keys (header values as the server decoded them,
        latin-1) equals a configured key. Every pair is compared, matched or not."""
        found = False
        for candidate in presented:
            given = candidate.encode("latin-1", "replace")  # the header's bytes as they came
            for key in self._keys:
                found |= hmac.compare_digest(given, key)  # no early exit: constant work per key
        return found
