"""The ``egrc-lite`` command line (Typer); the only part that prints.

Owns: the app and the training and preset commands (``app``), one module per command group
(``evaluate``: eval and report; ``merge``; ``analyze``; ``sweep``; ``info``: env and benchmarks list), and terminal output (``ui``: the live
training display, eval progress bars, one-line user errors). Heavy libraries are imported inside
the commands.

May import: every other part.
"""

from egrc_lite.cli.app import app

__all__ = ["app"]
