"""The progress bar every long loop shows: training, extraction, prediction.

In a terminal it is a rich Progress. In a Jupyter notebook (the Python API's home) rich's
live display redraws as a stream of outputs, so there the same calls draw tqdm.auto's
notebook bars instead (tqdm comes with open_clip)."""

from __future__ import annotations

import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar(enabled: bool = True):
    """A bar with description, count, an `info` field and times (disabled: prints nothing);
    in a notebook, `NotebookBars` with the same calls."""
    if enabled and in_notebook():
        return NotebookBars()
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )


def in_notebook() -> bool:
    """Is this a Jupyter kernel (IPython's ZMQ shell), where tqdm draws widgets?"""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


class NotebookBars:
    """The calls clipadapt makes on a rich Progress (`add_task`, `advance`, `update`), each
    task drawn as a tqdm.auto bar; a context manager that closes them all."""

    def __init__(self):
        self.bars: list = []

    def __enter__(self) -> NotebookBars:
        return self

    def __exit__(self, *exc) -> None:
        for bar in self.bars:
            bar.close()

    def add_task(self, description: str, total: float | None = None, completed: float = 0, info: str = "",
                 **fields) -> int:
        from tqdm.auto import tqdm

        self.bars.append(tqdm(total=total, initial=completed, desc=description, leave=True))
        if info:
            self.bars[-1].set_postfix_str(info)
        return len(self.bars) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        self.bars[task].update(advance)

    def update(self, task: int, *, advance: float | None = None, completed: float | None = None,
               description: str | None = None, info: str | None = None, total: float | None = None, **fields) -> None:
        bar = self.bars[task]
        if total is not None:
            bar.total = total
        if description is not None:
            bar.set_description_str(description, refresh=False)
        if info is not None:
            bar.set_postfix_str(info, refresh=False)
        if completed is not None:
            bar.update(completed - bar.n)
        if advance:
            bar.update(advance)
