"""Every command's --help is complete and readable in an 80-column terminal: each option
says what it does, and no help text or default is cut off with an ellipsis."""

from __future__ import annotations

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
