"""The identity of an ordered list of image files, from their paths and file stats (no
pixel is read): the feature store keys entries by it, and the scan for unusable images
remembers its verdicts by it."""

from __future__ import annotations

import hashlib
import os
from typing import Iterable


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
