"""Atomic file writes: a crash never leaves a half-written file in place of a good one.

A file is written under a temporary name in the same folder, flushed to disk, then
renamed over its target. Temporary names carry the host and process that made them
(`.checkpoint.safetensors.myhost-4242.1a2b3c4d.tmp`), so the leftovers of a process
that was killed mid-write (kill -9, out of memory, power loss) are recognised and
removed by the next write into that folder, and never mistaken for a live writer's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from typing import Callable

_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[0-9a-f]{8}\.(?:tmp|creating|removing)$")


def temp_path(path: Path, kind: str = "tmp") -> Path:
    """A fresh temporary name next to `path`, owned by this host and process."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_HOST}-{os.getpid()}.{uuid.uuid4().hex[:8]}.{kind}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files / folders left in `folder` by dead processes of this host;
    how many. Another host's leftovers are kept (its process may still be writing)."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        match = _TEMP.match(name)
        if not match or match["host"] != _HOST or _alive(int(match["pid"])):
            continue
        target = Path(folder) / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
        removed += 1
    return removed


_swept: set[str] = set()


def atomic_write(path: Path, write: Callable[[Path], None], durable: bool = False) -> None:
    """Call write(tmp_path), then rename tmp over `path` (same folder, so the rename is
    atomic): readers see the old file or the new one, never a part.

    That holds whenever a process dies (kill -9 included: its written pages stay in the
    page cache). `durable` also flushes the data to the disk before the rename, so it
    holds through a power cut too; it costs a few ms per file, so bulk writers of
    re-creatable files (rendered images, plots) leave it off.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if str(path.parent) not in _swept:  # once per folder and process: folders of images stay cheap
        remove_stale_temps(path.parent)
        _swept.add(str(path.parent))
    tmp = temp_path(path)
    # O_EXCL: never write through a name someone else holds; 0o666 & umask = a plain open()'s mode
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data) -> None:
    """Write pretty JSON atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, default=str) + "\n"))


def write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    atomic_write(path, lambda p: p.write_text(text))


def write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write bytes atomically (`durable`: flushed to disk before the rename)."""
    atomic_write(path, lambda p: p.write_bytes(data), durable=durable)
