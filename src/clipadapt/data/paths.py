"""Image paths read from tables and annotation files: resolved, and kept inside the data root.

A table from someone else can name any file; `../../etc/passwd` or `/home/you/.ssh/id_rsa`
in a manifest must not become an image a run reads, embeds in a report or uploads in a
prediction. The check is lexical (after normalising `.` and `..`), so symbolic links that
live inside the root (a common way to assemble data sets) keep working.
"""

from __future__ import annotations

import os
from pathlib import Path

from clipadapt.errors import ClipAdaptError


def is_inside(path: Path | str, root: Path | str) -> bool:
    """True when `path`, normalised, is `root` or below it."""
    path = os.path.normpath(os.path.abspath(os.fspath(path)))
    root = os.path.normpath(os.path.abspath(os.fspath(root)))
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_inside(path: Path, root: Path, where: str, allow_outside: bool = False, value: str | None = None) -> Path:
    """`path` unchanged when it lies inside `root` (or `allow_outside`); else one clear error."""
    if allow_outside or is_inside(path, root):
        return path
    shown = f"'{value}'" if value is not None else str(path)
    raise ClipAdaptError(
        f"{where}: image path {shown} points outside the data root {root} (to {os.path.normpath(path)}); refused. "
        "Image paths must stay inside data.root: move the images under it, point data.root at a folder that "
        "holds them all, or set data.allow_outside_root: true if you trust this table."
    )


def resolve_image_path(value: str, base: Path, where: str, allow_outside: bool = False) -> Path:
    """A table cell as an absolute image path: relative to `base`, which it must not leave."""
    # os.path's expanduser: "~name" of an unknown user stays as written (pathlib's raises).
    image = Path(os.path.expanduser(value))
    image = image if image.is_absolute() else base / image
    return check_inside(image, base, where, allow_outside, value)
