"""The one exception type users see: a message that names the thing and the fix."""


class ClipAdaptError(Exception):
    """A problem with the user's input, files or settings.

    The CLI prints the message alone (no traceback) and exits with status 2, so every
    message must say what was wrong (file, row, column, key) and how to fix it.
    """
