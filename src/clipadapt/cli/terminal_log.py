"""One format for every warning a command lets reach the terminal: `warning: <message>` on
one line, whether it came from `warnings.warn` (a ClipAdaptWarning or a library's), or a
`logging` record at WARNING or above from clipadapt or a library.

Without this, records went through whatever handler happened to be there: open_clip calls
`logging.info(...)` on the root logger, which installs the default handler on first use
(`WARNING:clipadapt:...`), and huggingface_hub adds its own plain handler to its logger,
so each of its retry lines printed twice. `terminal_warnings()` (used by `run_safely`)
routes every record through one handler for the length of a command and puts things back
afterwards.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

from clipadapt.errors import ClipAdaptWarning

# Libraries that add a handler of their own to their logger on import; while a command runs
# their records go to the root logger's handler only (each would otherwise print twice).
OWN_HANDLER_LIBRARIES = ("huggingface_hub", "transformers", "datasets")


def one_line(text: str) -> str:
    """A message on one line: its lines joined by single spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def print_warning(console: Console, message: str) -> None:
    """The one `warning:` line every warning is shown as."""
    console.print(f"[bold yellow]warning:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True)


class TerminalWarnings(logging.Handler):
    """Log records at WARNING and above as `warning:` lines; a library's record names the
    library first (`warning: huggingface_hub: Retrying in 1s ...`)."""

    def __init__(self, console: Console):
        super().__init__(logging.WARNING)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:  # the exception's line, not its traceback
                message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            library = record.name.split(".")[0]
            if library not in ("clipadapt", "root"):
                message = f"{library}: {message}"
            print_warning(self.console, message)
        except Exception:  # noqa: BLE001 - logging's contract: a failing handler reports, never raises
            self.handleError(record)


def _is_terminal_handler(handler: logging.Handler) -> bool:
    """A plain stream handler (basicConfig's, a library's default), not a file or a test's capture."""
    return type(handler) is logging.StreamHandler


def _show_warning(console: Console):
    """warnings.showwarning that prints every warning as one `warning:` line; a library's
    (not a ClipAdaptWarning) is named by its category."""
    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if not issubclass(category, ClipAdaptWarning):
            text = f"{category.__name__}: {text}"
        print_warning(console, text)
    return show


def _hold_back_own_handlers(logger: logging.Logger, removed: list) -> None:
    """Take the terminal handlers off a library's logger (kept in `removed` to put back),
    and keep it from adding one while the command runs (it may be imported later)."""
    for handler in [h for h in logger.handlers if _is_terminal_handler(h)]:
        logger.removeHandler(handler)
        removed.append((logger, handler))

    def add_handler(handler, _add=logging.Logger.addHandler.__get__(logger)):
        if not _is_terminal_handler(handler):
            _add(handler)
    logger.addHandler = add_handler  # this logger object only


@contextmanager
def terminal_warnings(console: Console):
    """For the length of a command: every warning and every log record at WARNING or above
    printed as one `warning:` line through one handler on the root logger; the handlers,
    levels and warning display that were there are restored afterwards."""
    root = logging.getLogger()
    ours = logging.getLogger("clipadapt")
    levels = (root.level, ours.level)
    removed: list = []
    for handler in [h for h in root.handlers if _is_terminal_handler(h)]:
        root.removeHandler(handler)
        removed.append((root, handler))
    libraries = [logging.getLogger(name) for name in OWN_HANDLER_LIBRARIES]
    for library in libraries:
        _hold_back_own_handlers(library, removed)
    handler = TerminalWarnings(console)
    root.addHandler(handler)  # also keeps logging.info() & co. from installing basicConfig's handler
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", ClipAdaptWarning)
            warnings.showwarning = _show_warning(console)
            yield handler
    finally:
        root.removeHandler(handler)
        for library in libraries:
            library.__dict__.pop("addHandler", None)
        for logger, old in removed:
            logger.addHandler(old)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])


def quiet_libraries() -> None:
    """Silence library log chatter below errors; clipadapt's own warnings still show."""
    # open_clip logs a warning for every randomly initialised model; users chose that.
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("clipadapt").setLevel(logging.WARNING)
