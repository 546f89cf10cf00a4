"""`--help` screens that read as a click help does, and keep every word.

Importing this module installs the changes (once); with a typer that lacks the pieces
changed here, that change is skipped and typer's own help is shown.

- Arguments by their upper-case metavar (CONFIG, RUN_DIR, IMAGES...), not typer 0.2x's
  `{config}` in the usage line.
- Value types as click names them (PATH, TEXT, INTEGER RANGE, [skip|fail]); a boolean flag
  (`--int8`, `--dry-run`, `--help`) shows no type, since it takes no value (typer 0.2x shows
  `<bool>`, as if it took one).
- An option's help, default and `[required]` as one paragraph: typer lays them out as
  columns, which puts `[default: ...]` sometimes beside the text and sometimes under it.
- A word longer than the help cell (a URL, a path, a default value) folds onto the next
  line instead of being cut with an ellipsis at 80 columns.
"""

from __future__ import annotations

from rich.text import Text

try:
    from typer import core as typer_core
    from typer import rich_utils
except ImportError:  # pragma: no cover - typer without rich
    typer_core = rich_utils = None

# typer's type label (inside <...>) -> click's name for it
CLICK_TYPE_NAMES = {
    "str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN", "path": "PATH", "file": "FILENAME",
    "int range": "INTEGER RANGE", "float range": "FLOAT RANGE", "uuid": "UUID", "datetime": "DATETIME",
}


def click_type_name(param, ctx) -> str | None:
    """What an option or argument takes, as click shows it; None for a boolean flag."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if getattr(param, "metavar", None) is not None:
        return param.metavar
    label = _PLAIN_DISPLAY_TYPE(param, ctx).strip("<>")
    if param.type_descriptor.is_choice:
        return f"[{label}]"
    if label.startswith("list[") and label.endswith("]"):  # a repeatable option: the type of one value
        label = label[len("list["):-1]
    return CLICK_TYPE_NAMES.get(label, label.upper())


def argument_name(param) -> str:
    """An argument as click names it: its metavar, else its name in upper case."""
    return param.metavar or (param.name or "").upper()


def usage_piece(param) -> str:
    """An argument in the usage line: CONFIG, [WHAT] when optional, IMAGES... when repeated."""
    name = argument_name(param)
    if not param.required:
        name = f"[{name}]"
    return name + ("..." if param.nargs != 1 else "")


def one_paragraph(parameter_help):
    """Wrap typer's _get_parameter_help: the help, default and [required] joined into one
    Text that folds long words (typer returns them as Columns, laid out side by side)."""
    def parameter_help_paragraph(*args, **kwargs):
        help_columns = parameter_help(*args, **kwargs)
        items = list(getattr(help_columns, "renderables", ()))
        if not items or not all(isinstance(item, Text) for item in items):  # Markdown help: leave as it is
            for item in items:
                if isinstance(item, Text):
                    item.overflow = "fold"
            return help_columns
        paragraph = Text(" ").join(items)
        paragraph.overflow = "fold"
        return paragraph

    parameter_help_paragraph.folds = True
    return parameter_help_paragraph


def _install() -> None:
    """Patch typer's help pieces, each only where typer has it and only once."""
    if rich_utils is not None:
        original = getattr(rich_utils, "_get_parameter_help", None)
        if original is not None and not getattr(original, "folds", False):
            rich_utils._get_parameter_help = one_paragraph(original)
    argument = getattr(typer_core, "TyperArgument", None)
    option = getattr(typer_core, "TyperOption", None)
    if _PLAIN_DISPLAY_TYPE is None or argument is None or option is None:
        return
    if hasattr(argument, "_usage_display_name"):
        argument._usage_display_name = usage_piece
    argument.display_name_raw = property(argument_name)
    argument.display_type_rich = click_type_name
    option.display_type_rich = click_type_name


# typer's own <type> label, kept before the patches replace display_type_rich
_PLAIN_DISPLAY_TYPE = getattr(getattr(typer_core, "_TyperParameter", None), "display_type", None)
_install()
