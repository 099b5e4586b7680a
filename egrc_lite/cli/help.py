"""Help that reads as words: option types as ``TEXT``/``INTEGER``/``PATH`` (not Python's ``<list[str]>``),
and no type at all after a boolean flag (``--resume``, not ``--resume <bool>``, which invites ``--resume true``).

:class:`WordsGroup` shows that word as the type of every parameter of every command (subcommands included)
that has no metavar of its own, before help is drawn.
"""

from __future__ import annotations

from typing import Any

import click
import typer.core


WORDS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "file": "FILE", "directory": "DIR"}
"""Python type names as typer labels them -> the word help shows."""


def metavar_word(param: Any, ctx: click.Context) -> str:
    """``""`` for a flag, else a word for typer's type label: ``<list[str]>`` -> ``TEXT``, ``<int>`` -> ``INTEGER``.

    >>> class Param:
    ...     is_flag = False
    ...     def display_type(self, ctx): return "<list[Path]>"
    >>> metavar_word(Param(), None)
    'PATH'
    """
    if getattr(param, "is_flag", False):
        return ""
    label = param.display_type(ctx).strip("<>")
    while label.startswith("list[") and label.endswith("]"):
        label = label[len("list["):-1]
    return WORDS.get(label.lower(), label.upper())


def use_words(command: click.Command, ctx: click.Context) -> click.Command:
    """Show :func:`metavar_word` as the type of each argument and each option without a metavar of its own
    of ``command`` (its ``--help`` and its subcommands' included); parsing and error messages are unchanged."""
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if param.metavar is None or param.param_type_name == "argument":  # an argument's metavar is its name
            word = metavar_word(param, ctx)
            param.display_type_rich = lambda ctx, word=word: word or None  # shadows the method on this object
    for sub in getattr(command, "commands", {}).values():
        use_words(sub, ctx)
    return command


class WordsGroup(typer.core.TyperGroup):
    """The app's group: it, and every command it hands out (for help or to run), go through :func:`use_words`."""

    def get_params(self, ctx: click.Context) -> list[Any]:
        use_words(self, ctx)
        return super().get_params(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        return use_words(command, ctx) if command is not None else None
