"""Content keys of feature-store entries.

An entry is named by what went into it (backbone, weights, preprocessing, tap, views,
images), never by a run or a date, so two runs that would compute the same features
share them and anything that would change a feature gives a new entry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

KEY_LENGTH = 16  # hex digits = 64 bits: collisions are not a practical concern for a cache


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for the few non-JSON types callers naturally pass."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"feature key parts must be JSON data; got {type(value).__name__}: {value!r}")


def canonical_json(parts: dict) -> str:
    """One spelling per value: sorted keys, no spaces, tuples as lists."""
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_jsonable)


def feature_key(parts: dict) -> str:
    """Short sha256 hex digest of the canonical JSON of `parts`.

    `parts` is whatever identifies the features: backbone name, weights identity,
    preprocessing, tap, number of views and view seed, and the image list (see
    `image_list_fingerprint`). Key order does not matter; any value change does.

    >>> feature_key({"a": 1, "b": [1, 2]}) == feature_key({"b": (1, 2), "a": 1})
    True
    """
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()[:KEY_LENGTH]
