"""Help reads as words at 80 columns: no Python type names (``<list[str]>``, ``<int>``), no type after a flag
(``--resume <bool>`` invites ``--resume true``); ``presets list`` fits 80 columns without cutting names."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from egrc_lite.cli.app import app

runner = CliRunner()
PYTHON_TYPE = re.compile(r"<(?:bool|str|int|float|path|Path|list\[[^\]]*\])>")


def _command_paths() -> list[list[str]]:
    """Every command and subcommand of the app, as argument lists (``["presets", "list"]``)."""
    root = typer.main.get_command(app)
    ctx = typer.Context(root)
    paths = [[]]
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        subs = getattr(command, "commands", None)
        paths += [[name, sub] for sub in subs] if subs else [[name]]
    return paths


COMMANDS = _command_paths()


def test_every_command_is_covered():
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "compress", "train", "eval", "report", "merge", "analyze", "sweep", "env", "presets list",
            "presets show", "benchmarks list"} <= names


@pytest.mark.parametrize("args", COMMANDS, ids=lambda p: " ".join(p) or "egrc-lite")
def test_help_has_words_not_python_types(args):
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    assert not PYTHON_TYPE.findall(result.output), result.output
    for line in result.output.splitlines():
        if "--help" in line:
            assert re.search(r"--help\s+Show this message", line), line
        if re.search(r"--(resume|verbose|version|trust-remote-code|allow-inconclusive)\b", line):
            assert not re.search(r"--[a-z-]+(\s+-\w)?\s+(<bool>|BOOLEAN|TEXT)", line), line
    assert len(max(result.output.splitlines(), key=len)) <= 80


def test_compress_help_names_value_types_in_words():
    result = runner.invoke(app, ["compress", "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    flat = " ".join(result.output.split())
    assert "--preset -p TEXT" in flat and "--out -o PATH" in flat and "--seed INTEGER" in flat
    assert re.search(r"--resume\s+Continue", flat)


def test_presets_list_fits_80_columns_with_whole_names():
    from egrc_lite.presets import list_presets

    result = runner.invoke(app, ["presets", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.output and "..." not in result.output
    shown = {line.split("│")[1].strip() for line in lines if line.startswith("│") and line.split("│")[1].strip()}
    assert {p.name for p in list_presets()} == shown
