"""Headless Chromium for looking at reports and the web page as a person would (the
browser tests and `scripts/screenshots.py`).

Uses the system's Chromium (Debian package `chromium`) through playwright, never a
downloaded browser; playwright is a development extra, imported only when used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# Offline and quiet: no sandbox (containers run as root), no GPU, no update or sync traffic.
ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync")


def find_chromium() -> Path | None:
    """The Chromium executable: $CLIPADAPT_CHROMIUM, a usual path, or `chromium` on PATH."""
    configured = os.environ.get("CLIPADAPT_CHROMIUM")
    for candidate in ([configured] if configured else []) + list(CANDIDATES):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


def install_chromium(timeout: float = 600.0) -> str | None:
    """Try `apt-get install -y chromium` (only as root, where apt-get exists).

    Returns None when it ran and succeeded, else the reason it could not.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not running as root, so apt-get cannot install chromium"
    if shutil.which("apt-get") is None:
        return "apt-get is not available on this system"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                return f"`{' '.join(command)}` failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}"
    except subprocess.TimeoutExpired:
        return f"apt-get did not finish within {timeout:.0f} s"
    return None


def launch(playwright, executable: Path):
    """A headless Chromium browser from a started `sync_playwright()` object."""
    return playwright.chromium.launch(executable_path=str(executable), args=list(ARGS))
