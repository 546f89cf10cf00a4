"""The bad-image policy's names (a module of its own so the CLI can list them without
importing the imaging stack)."""

from __future__ import annotations

from enum import Enum


class BadImagePolicy(str, Enum):
    """What to do with an image that cannot be used: leave it out and list it, or stop."""

    skip = "skip"
    fail = "fail"
