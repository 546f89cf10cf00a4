"""`--help` screens that keep every word.

typer's rich help puts each option's help and default in a table cell that cuts a word
longer than the cell (a URL, a path, a default value) with an ellipsis at 80 columns, so
a user cannot read it. Here such a word folds onto the next line instead. Importing this
module installs the change (once); without typer's rich help it does nothing.
"""

from __future__ import annotations

from rich.text import Text

try:
    from typer import rich_utils
except ImportError:  # pragma: no cover - typer without rich
    rich_utils = None


def _folding(parameter_help):
    def parameter_help_folding(*args, **kwargs):
        help_columns = parameter_help(*args, **kwargs)
        for item in getattr(help_columns, "renderables", ()):
            if isinstance(item, Text):
                item.overflow = "fold"
        return help_columns

    parameter_help_folding.folds = True
    return parameter_help_folding


_original = getattr(rich_utils, "_get_parameter_help", None)
if _original is not None and not getattr(_original, "folds", False):
    rich_utils._get_parameter_help = _folding(_original)
