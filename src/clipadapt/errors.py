"""The one exception type users see: a message that names the thing and the fix."""

from __future__ import annotations

import re

# torch's DataLoader re-raises an error from a worker process as
# `type(exc)("Caught X in DataLoader worker process 0.\nOriginal Traceback ...\nmodule.X: message")`;
# the user must see the message, not a traceback pasted into it.
_WORKER_TRACEBACK = "\nOriginal Traceback (most recent call last):"
_EXCEPTION_PREFIX = re.compile(r"^[A-Za-z_][\w.]*: ")


def _strip_worker_traceback(message: str) -> str:
    if _WORKER_TRACEBACK not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    return _EXCEPTION_PREFIX.sub("", last, count=1)


class ClipAdaptError(Exception):
    """A problem with the user's input, files or settings.

    The CLI prints the message alone (no traceback) and exits with status 2, so every
    message must say what was wrong (file, row, column, key) and how to fix it.
    """

    def __init__(self, message: str = "", *args):
        super().__init__(_strip_worker_traceback(str(message)), *args)


class ClipAdaptWarning(UserWarning):
    """A run finished but its result needs the user's attention (classes the text cannot
    tell apart, a run that did not learn). The CLI prints the message as one line."""


class ClassTextWarning(ClipAdaptWarning):
    """The text side cannot tell some classes apart (their prompts encode alike), or a class
    name holds words the text encoder never learned: predictions among them are blind."""


class NoProgressWarning(ClipAdaptWarning):
    """A training run finished without learning (its loss or validation score did not move)."""


class AtChanceWarning(ClipAdaptWarning):
    """The selected model scores at chance (balanced accuracy about 1 / classes)."""
