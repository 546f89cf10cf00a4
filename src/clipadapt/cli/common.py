"""What every `clipadapt` command shares: the two consoles, one-line errors and warnings,
seed parsing and the metric table printer. main.py only assembles the commands."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clipadapt.data.policy import BadImagePolicy
from clipadapt.cli.terminal_log import quiet_libraries, terminal_warnings  # noqa: F401 - commands import quiet_libraries here
from clipadapt.errors import ClipAdaptError
from clipadapt.metrics.table import HEADLINE, METRICS

console = Console(stderr=True)
out_console = Console()


# what to pass instead of a path that is not there, per kind of path a command takes
from clipadapt.run_files import RUN_FOLDER  # noqa: E402,F401 - commands import it from here


def require_path(path: Path | None, kind: tuple[str, str] = ("", "")) -> None:
    """Answer a path the user named that is not there at once, before the command imports
    torch (seconds): '<path> does not exist', the closest name in its folder and what to
    pass instead (`kind`: e.g. RUN_FOLDER). None (an option not given) passes."""
    if path is not None and not Path(path).expanduser().exists():
        from clipadapt.data.inputs import missing_path

        raise ClipAdaptError(missing_path(Path(path).expanduser(), *kind))


def skip_by_default(help: str):
    """--on-bad-image for the commands that leave unusable images out unless told to stop."""
    return typer.Option(BadImagePolicy.skip, "--on-bad-image", help=help)


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2); a clear error for anything else."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ClipAdaptError(f"--seeds {text!r}: give whole numbers separated by commas, e.g. --seeds 0,1,2.") from None
    if not seeds:
        raise ClipAdaptError("--seeds: give at least one seed, e.g. --seeds 0,1,2.")
    return seeds


def run_safely(fn):
    """Turn ClipAdaptError into one clear line on stderr and exit status 2; print every
    warning (a ClipAdaptWarning each time, a library's, a log record at WARNING or above)
    as one "warning:" line (cli/terminal_log.py)."""
    try:
        with terminal_warnings(console):
            return fn()
    except ClipAdaptError as exc:
        # soft_wrap: paths in the message stay on one line, so they can be copied.
        # escape: a message may hold "[name]" (a key, a list), which rich would eat as markup
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def percent(value: float | None) -> str:
    """A score as a percentage; n/a where it is undefined (no labels, a single class)."""
    return "n/a" if value is None else f"{100 * value:.2f}"


def print_metrics(metrics: dict | None, title: str) -> None:
    """The test metrics of a run as a table: one row per attribute, plus their mean."""
    if not metrics:
        out_console.print("(no test split: nothing evaluated)")
        return
    table = Table(title=title)
    # a run's calibration error is shown beside its scores (every evaluation computes it)
    keys = HEADLINE + (("ece",) if "ece" in metrics["mean"] else ())
    table.add_column("attribute", justify="left")
    for col in (*(METRICS[k].header for k in keys), "n"):
        table.add_column(col, justify="right")
    for name, m in metrics["attributes"].items():
        table.add_row(name, *(percent(m.get(k)) for k in keys), str(m["n"]))
    if len(metrics["attributes"]) > 1:
        table.add_row("mean", *(percent(metrics["mean"].get(k)) for k in keys), "")
    out_console.print(table)
