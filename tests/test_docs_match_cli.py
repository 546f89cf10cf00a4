"""The README and docs/ show commands a user will paste: every `clipadapt <command>` they
show must exist, and every --option it is given must be one that command takes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from clipadapt.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = typer.main.get_command(app).commands
INLINE = re.compile(r"`(clipadapt [^`]+)`")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def shown_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command text) for every clipadapt command line of a fenced code
    block (continuation lines ending in a backslash joined) and every inline `clipadapt ...`."""
    found, in_block, pending = [], False, None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block, pending = not in_block, None
            continue
        if in_block:
            text = stripped.removeprefix("$ ")
            if pending is not None:
                pending = (pending[0], pending[1] + " " + text)
            elif text.startswith("clipadapt "):
                pending = (number, text)
            if pending is not None and not text.endswith("\\"):
                found.append((pending[0], pending[1].split("#", 1)[0]))
                pending = None
        else:
            found += [(number, m.group(1)) for m in INLINE.finditer(line)]
    return found


def test_the_docs_show_commands_at_all():
    assert sum(len(shown_commands(p)) for p in DOCS) > 30


def doc_problems(path: Path) -> list[str]:
    """One line per shown command that does not exist or is given an option it lacks
    (an upper-case placeholder such as `clipadapt COMMAND --help` is not a command)."""
    problems = []
    for number, text in shown_commands(path):
        words = text.split()
        if len(words) < 2 or words[1].startswith("-") or words[1].isupper():
            continue
        command = COMMANDS.get(words[1])
        if command is None:
            problems.append(f"{path.name}:{number}: no command {words[1]!r} in `{text}`")
            continue
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        problems += [f"{path.name}:{number}: `clipadapt {words[1]}` has no {o} (in `{text}`)"
                     for o in OPTION.findall(text) if o not in options]
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_command_and_option_the_docs_show_exists(path):
    problems = doc_problems(path)
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_stale_option_and_a_missing_command(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Run `clipadapt train run.yaml --out r --epochz 3`.\n\n```bash\n"
                    "clipadapt predict img/ \\\n    --checkpoint r --fp99\nclipadapt fit x\n"
                    "clipadapt eval r  # --not-an-option in a comment\n```\n", encoding="utf-8")
    problems = doc_problems(page)
    assert len(problems) == 3, problems
    assert "--epochz" in problems[0] and "--fp99" in problems[1] and "'fit'" in problems[2]
