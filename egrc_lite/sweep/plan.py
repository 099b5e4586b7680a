"""Ablation sweeps: a grid of config values, each combination trained and evaluated against the
base model once, and one comparison report (the shape of the paper's Table 2).

A grid axis is ``key=v1,v2,...``: a dotted config key (stages by name, as in ``--set``:
``schedule.stages.compress.length_clip=96,192``) and values read like ``--set`` values (YAML
scalars or flow lists; commas inside ``[...]``, ``{...}`` or quotes do not split). The axis
``preset`` takes preset overlays instead: ``preset=none,ablations/lc2048`` (``none`` adds no
overlay, ``a+b`` adds two). Each combination resolves as
``resolve([*presets, *its presets], [*sets, *its key=value])``, so a bad value fails when the
sweep is planned, with an error naming the combination.

A sweep directory a person can read::

    <out>/
      sweep.json              the plan and each combination's status (written atomically)
      runs/<name>/            one run directory per combination (egrc_lite.runs); error.txt if it failed
      eval/base/              the base model (no adapter), evaluated once
      eval/<name>/            each combination's adapter, evaluated (egrc_lite.evaluation.evaluate)
      eval/<name>@<stage>/    with --eval-stages: its adapter at the end of that stage (all stages but the last)
      report.md               ACC, LEN, L-Acc per benchmark against the base; training metrics; failures
      accuracy_vs_length.png  one point per model and the Pareto front (with evaluation only)

Statuses: ``pending`` (not reached), ``running``, ``done`` (work done by this invocation),
``skipped`` (complete from an earlier invocation, nothing run), ``failed`` (one-line ``reason``;
the sweep goes on, and a rerun retries it). Rerunning the same command skips finished runs,
resumes unfinished ones from their last checkpoint and reuses evaluation samples already written.

>>> split_values("16,24, [explore, compress]")
['16', '24', '[explore, compress]']
>>> labels = axis_labels(["schedule.stages.compress.length_clip", "reward.shape"])
>>> run_name((("schedule.stages.compress.length_clip", "96"), ("reward.shape", "cosine")), labels)
'lc=96_shape=cosine'
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egrc_lite.config import ConfigError, EgrcConfig
from egrc_lite.errors import EgrcError
from egrc_lite.presets import DEFAULT_PRESET, find_preset, resolve

logger = logging.getLogger(__name__)

PRESET_AXIS = "preset"
NO_PRESET = "none"
BASE = "base"
SWEEP_JSON, REPORT_MD, PLOT_PNG, ERROR_TXT = "sweep.json", "report.md", "accuracy_vs_length.png", "error.txt"
SHORT_KEYS = {"length_clip": "lc", "max_completion_length": "maxlen", "learning_rate": "lr", "num_generations": "G",
              "temperature": "temp", "prompts_per_step": "pps", "name_or_path": "model"}
MAX_NAME = 96
ABSENT = "(absent)"
_UNSAFE = re.compile(r"[^A-Za-z0-9.=+-]+")


class SweepError(EgrcError, ValueError):
    """A mistake in ``--grid``, a combination or a sweep directory; one line naming the fix."""


# ---------------------------------------------------------------------------------------- the grid

@dataclass(frozen=True)
class GridAxis:
    key: str
    values: tuple[str, ...]  # raw texts, read like --set values


def split_values(text: str) -> list[str]:
    """Split ``v1,v2,...`` at top-level commas (not inside brackets, braces or quotes)."""
    parts, current, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return parts


def parse_grid(text: str) -> GridAxis:
    """One ``--grid key=v1,v2,...``; a ``preset`` axis checks that each preset exists."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SweepError(f"--grid '{text}' must look like dotted.key=v1,v2,... e.g. reward.shape=linear,cosine")
    values = split_values(raw)
    if "" in values:
        raise SweepError(f"--grid '{text}': empty value; separate the values with single commas")
    repeated = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if repeated is not None:
        raise SweepError(f"--grid '{text}': value '{repeated}' is listed twice")
    if key == PRESET_AXIS:
        for name in (p for v in values for p in v.split("+") if p != NO_PRESET):
            find_preset(name)
    return GridAxis(key, tuple(values))


def parse_grids(texts: Sequence[str]) -> list[GridAxis]:
    axes = [parse_grid(t) for t in texts]
    if not axes:
        raise SweepError("a sweep needs at least one --grid key=v1,v2,... (e.g. --grid reward.shape=linear,cosine)")
    keys = [a.key for a in axes]
    twice = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if twice is not None:
        raise SweepError(f"--grid {twice} is given twice; list all its values in one --grid")
    return axes


def axis_labels(keys: Sequence[str]) -> dict[str, str]:
    """Short labels for run names: each key's last part (abbreviated), with parents added where two clash.

    >>> axis_labels(["schedule.stages.compress.length_clip", "schedule.stages.explore.length_clip"])
    {'schedule.stages.compress.length_clip': 'compress.lc', 'schedule.stages.explore.length_clip': 'explore.lc'}
    """
    depth = dict.fromkeys(keys, 1)

    def label(key: str) -> str:
        parts = key.split(".")
        return ".".join(parts[-depth[key]:-1] + [SHORT_KEYS.get(parts[-1], parts[-1])])

    while True:
        labels = {k: label(k) for k in keys}
        counts = {v: list(labels.values()).count(v) for v in labels.values()}
        clashing = [k for k in keys if counts[labels[k]] > 1 and depth[k] < len(k.split("."))]
        if not clashing:
            return labels
        for key in clashing:
            depth[key] += 1


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-.") or "x"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def run_name(assignments: Sequence[tuple[str, str]], labels: dict[str, str]) -> str:
    """``label=value`` parts joined by ``_`` (a preset axis contributes its presets' file stems)."""
    parts = []
    for key, raw in assignments:
        if key == PRESET_AXIS:
            parts.append("+".join("no-ablation" if p == NO_PRESET else _safe(Path(p).stem) for p in raw.split("+")))
        else:
            parts.append(f"{_safe(labels[key])}={_safe(raw)}")
    name = "_".join(parts)
    return name if len(name) <= MAX_NAME else f"{name[:MAX_NAME - 9]}-{_digest(name)}"


@dataclass(frozen=True)
class Combination:
    """One point of the grid: its run name, its ``(key, raw value)`` pairs and its resolved config."""

    name: str
    assignments: tuple[tuple[str, str], ...]
    config: EgrcConfig

    @property
    def presets(self) -> list[str]:
        return [p for k, v in self.assignments if k == PRESET_AXIS for p in v.split("+") if p != NO_PRESET]

    @property
    def sets(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.assignments if k != PRESET_AXIS]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.assignments)


@dataclass(frozen=True)
class SweepPlan:
    presets: tuple[str, ...]
    sets: tuple[str, ...]
    axes: tuple[GridAxis, ...]
    base: EgrcConfig
    runs: tuple[Combination, ...]


def plan_sweep(presets: Sequence[str] | None, grid: Sequence[str], sets: Sequence[str] | None = None) -> SweepPlan:
    """Every combination of the grid with its resolved config; a combination that does not resolve
    raises a :class:`SweepError` naming it."""
    presets, sets = tuple(presets or [DEFAULT_PRESET]), tuple(sets or [])
    axes = parse_grids(grid)
    base = resolve(list(presets), list(sets))
    labels = axis_labels([a.key for a in axes])
    combos, taken = [], {BASE}
    for values in itertools.product(*(a.values for a in axes)):
        assignments = tuple(zip((a.key for a in axes), values))
        name = run_name(assignments, labels)
        if name in taken:
            name = f"{name}-{_digest(repr(assignments))}"
        taken.add(name)
        combo = Combination(name, assignments, base)
        try:
            cfg = resolve([*presets, *combo.presets], [*sets, *combo.sets])
        except ConfigError as err:
            raise SweepError(f"--grid combination {name} ({combo.label}): {err}") from None
        combos.append(dataclasses.replace(combo, config=cfg))
    return SweepPlan(presets, sets, tuple(axes), base, tuple(combos))


def flatten(data: Any, prefix: str = "", by_name: bool = True) -> dict[str, Any]:
    """Dotted keys of a config dict; list items by index, or stages by name (``schedule.stages.compress.steps``)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}.", by_name))
        return out
    if isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        names = [str(x.get("name") or x.get("mode") or i) for i, x in enumerate(data)]
        if not by_name or len(set(names)) != len(names):
            names = [str(i) for i in range(len(data))]
        out = {}
        for name, item in zip(names, data):
            out.update(flatten(item, f"{prefix}{name}.", by_name))
        return out
    return {prefix[:-1]: data}


def dict_diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` wherever two config dicts differ (``ABSENT`` where one lacks the key); stages
    are matched by name (a reordered schedule shows as ``schedule.order`` only), or by position when
    that gives the shorter list (a renamed stage)."""
    diffs = []
    for by_name in (True, False):
        a, b = flatten(old, by_name=by_name), flatten(new, by_name=by_name)
        keys = list(b) + [k for k in a if k not in b]
        diffs.append([(k, a.get(k, ABSENT), b.get(k, ABSENT)) for k in keys if a.get(k, ABSENT) != b.get(k, ABSENT)])
    return min(diffs, key=len)


def config_diff(base: EgrcConfig, cfg: EgrcConfig) -> list[tuple[str, Any, Any]]:
    return dict_diff(base.model_dump(mode="json"), cfg.model_dump(mode="json"))


# ---------------------------------------------------------------------------------------- evaluation
