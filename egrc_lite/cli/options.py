"""Options shared by several commands (``compress``, ``train``, ``presets show``, ``plan``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config value: dotted.key=value (repeatable; applied in order). "
                 "List items by index from 0 (-1: the last) or a stage by its name or mode: "
                 "schedule.stages.compress.steps=5."),
]
PresetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--preset", "-p", help="Preset name (see `egrc-lite presets list`) or a .yaml path; repeat to "
                 "compose, e.g. --preset r1-1.5b --preset ablations/lc2048. Default: the embedded CPU demo 'default'."),
]
