"""Content keys of feature-store entries.

An entry is named by what went into it (backbone, weights, preprocessing, tap, views,
images), never by a run or a date, so two runs that would compute the same features
share them and anything that would change a feature gives a new entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

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


def _stat_line(path: str | os.PathLike) -> str:
    # A file that cannot be stat'ed is recorded as missing rather than raised here: the
    # image loader reports unreadable files with their manifest row, and the key still
    # changes once the file appears.
    try:
        st = os.stat(path)
    except OSError:
        return f"{os.fspath(path)}\t-\t-\t-"
    # ctime too: nobody can set it, so a file replaced by one of the same size whose
    # mtime was copied along (cp -p, rsync -t, tar) still changes the key.
    return f"{os.fspath(path)}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}"


def image_list_fingerprint(paths: Iterable[str | os.PathLike]) -> dict:
    """A compact identity of an ordered image list: count + digest of (path, size,
    mtime_ns, ctime_ns).

    Row order matters (features are stored by row), and touching or replacing any file
    changes the digest (so do chmod and chown, which cost a re-extraction, never a wrong
    feature). The digest, not the list, goes into the key parts so that meta.json stays
    small for millions of images.
    """
    digest = hashlib.sha256()
    count = 0
    for path in paths:
        digest.update(_stat_line(path).encode("utf-8", "surrogateescape"))
        digest.update(b"\n")
        count += 1
    return {"count": count, "sha256": digest.hexdigest()}
