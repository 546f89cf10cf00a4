"""Every command's --help is complete and readable in an 80-column terminal: each option
says what it does, and no help text or default is cut off with an ellipsis."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from clipadapt.cli.main import app

COMMANDS = typer.main.get_command(app).commands


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_a_help_line(name):
    missing = [p.name for p in COMMANDS[name].params if not getattr(p, "help", None)]
    assert not missing, f"clipadapt {name}: no help for {missing}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_at_80_columns_cuts_nothing(name):
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    assert max(map(len, result.output.splitlines())) <= 80  # it did render at 80 columns
    assert "…" not in result.output, result.output


def test_a_long_word_folds_instead_of_being_cut():
    result = CliRunner().invoke(app, ["describe", "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    text = "".join(line.strip("│ ") for line in result.output.splitlines())
    assert "http://localhost:8000/v1" in text


def test_list_methods_says_what_each_is_and_its_params():
    from clipadapt.methods import METHODS

    result = CliRunner().invoke(app, ["list", "methods"], env={"COLUMNS": "400"})
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and [line.split(":")[0] for line in lines] == METHODS.names()
    built_in = ["clip_adapter", "coop", "linear_probe", "majority", "mhadapter", "microclip", "promptpar", "zeroshot"]
    for name, line in zip(METHODS.names(), lines):
        if name in built_in:  # a test may have registered one of its own
            assert METHODS.get(name).summary and "registered by you" not in line, line
    mhadapter = next(line for line in lines if line.startswith("mhadapter:"))
    assert "patch tokens" in mhadapter and mhadapter.endswith("params: " + ", ".join(METHODS.get("mhadapter").Params.model_fields))


def help_at_80(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"},
                                prog_name="clipadapt")
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(("name", "usage"), [
    ("train", "clipadapt train [OPTIONS] CONFIG"), ("export", "clipadapt export [OPTIONS] RUN_DIR"),
    ("predict", "clipadapt predict [OPTIONS] INPUTS..."), ("explain", "clipadapt explain [OPTIONS] IMAGES..."),
    ("list", "clipadapt list [OPTIONS] [WHAT]"),
])
def test_usage_names_arguments_by_their_upper_case_metavar(name, usage):
    usage_line = next(line for line in help_at_80(name).splitlines() if "Usage:" in line)
    assert usage_line.strip() == f"Usage: {usage}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_flags_show_no_value_type(name):
    text = help_at_80(name)
    assert "<bool>" not in text and not re.search(r"<(str|int|path|float)", text), text


@pytest.mark.parametrize(("name", "flag"), [("export", "--int8"), ("bench", "--dry-run"), ("train", "--quiet")])
def test_a_flag_row_has_help_right_after_the_names(name, flag):
    row = next(line for line in help_at_80(name).splitlines() if f" {flag} " in line)
    # the names, then only spaces up to the help: no type column entry in between
    assert re.search(re.escape(flag) + r"( +--no-[a-z-]+)? {2,}[A-Z][a-z]", row), row


def test_values_are_typed_as_click_names_them():
    text = help_at_80("predict")
    for shown in ("PATH", "TEXT", "INTEGER RANGE", "[skip|fail]", "[fp32|bf16|int8]"):
        assert shown in text, shown


def test_the_default_follows_the_help_text_in_one_paragraph():
    # typer lays help and default out as columns: '[default: 32]' alone under 'check.'
    text = help_at_80("export")
    assert re.search(r"check\. \[default: 32\]", text), text
