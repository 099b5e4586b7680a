"""The stage plan and the entropy-guided switch (method.md s4); pure, no torch, no I/O.

* :func:`plan_stages` turns ``ScheduleConfig.stages`` into :class:`StagePlan` entries (any order:
  compress -> explore is the method, explore -> compress the ablation).
* :func:`should_switch` decides, from the per-step metric history of a compression stage, whether
  its smoothed curve has stopped falling.
* :class:`AutoSwitch` wraps that decision for one stage; :class:`ScheduleState` is the small,
  JSON-able position of a run (stage, steps, metric history) that the runner saves for resume.
* :func:`stage_caps` gives a stage's length clip and generation cap for its next step, lowered on the stage's
  ``cap_schedule`` (ThinkPrune-style iterative tightening, a baseline: presets/baselines/thinkprune.yaml).

A stage ends when it has run ``steps`` steps (reason ``"steps"``) or, for a ``compress`` stage with
``auto_switch.enabled``, when :func:`should_switch` says so (reason ``"auto_switch"``).

>>> from egrc_lite.config import ScheduleConfig
>>> [(s.name, s.mode, s.steps, s.start_step) for s in plan_stages(ScheduleConfig())]
[('compress', 'compress', 40, 0), ('explore', 'explore', 20, 40)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from egrc_lite.config import AutoSwitchConfig, ScheduleConfig, StageConfig


@dataclass(frozen=True)
class StagePlan:
    """One stage to run. ``start_step`` is the global step it starts at if no stage ends early."""

    index: int
    name: str
    mode: str
    steps: int
    start_step: int
    auto_switch: bool
    config: StageConfig


def plan_stages(schedule_cfg: ScheduleConfig) -> list[StagePlan]:
    """The ordered stage plan; zero-step stages are dropped, repeated names get ``-2``, ``-3``.

    ``auto_switch`` is true for ``compress`` stages when ``schedule_cfg.auto_switch.enabled``.

    >>> from egrc_lite.config import ScheduleConfig
    >>> cfg = ScheduleConfig.model_validate({"auto_switch": {"enabled": True}, "stages": [
    ...     {"mode": "explore", "steps": 5}, {"mode": "compress", "steps": 0},
    ...     {"mode": "compress", "steps": 7}, {"mode": "explore", "steps": 2}]})
    >>> [(p.index, p.name, p.start_step, p.auto_switch) for p in plan_stages(cfg)]
    [(0, 'explore', 0, False), (2, 'compress', 5, True), (3, 'explore-2', 12, False)]
    """
    plan: list[StagePlan] = []
    seen: dict[str, int] = {}
    start = 0
    for index, stage in enumerate(schedule_cfg.stages):
        if stage.steps == 0:
            continue
        base = stage.name or stage.mode
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}-{seen[base]}"
        auto = schedule_cfg.auto_switch.enabled and stage.mode == "compress"
        plan.append(StagePlan(index, name, stage.mode, stage.steps, start, auto, stage))
        start += stage.steps
    return plan


def stage_caps(stage: StageConfig, steps_done: int) -> tuple[int, int]:
    """``(length_clip, max_completion_length)`` of ``stage``'s next step, after ``steps_done`` of its steps.

    ThinkPrune (Hou et al. 2025) trains under a length limit that shrinks in rounds (4k -> 3k -> 2k tokens;
    a completion cut at the limit gives no answer, so reward 0). Here each entry of ``stage.cap_schedule``
    applies from the stage's step ``round(at * steps) + 1`` on: the cap becomes ``max(1, round(scale * cap))``
    of the stage's own cap, and ``L`` becomes ``min(L, new cap)``; the last entry that applies wins.
    Without a schedule the stage's own values, at every step. A resumed stage gets the same caps (the
    schedule state knows ``steps_done``).

    >>> from egrc_lite.config import StageConfig
    >>> st = StageConfig(mode="explore", steps=3, length_clip=2048, max_completion_length=4096,
    ...                  cap_schedule=[{"at": 0.33, "scale": 0.75}, {"at": 0.67, "scale": 0.5}])
    >>> [stage_caps(st, done) for done in range(3)]
    [(2048, 4096), (2048, 3072), (2048, 2048)]
    """
    clip, cap = int(stage.length_clip), int(stage.max_completion_length)
    scale = 1.0
    for step in stage.cap_schedule:
        if steps_done >= round(step.at * stage.steps):
            scale = step.scale
    if scale == 1.0:
        return clip, cap
    cap = max(1, round(scale * cap))
    return min(clip, cap), cap


def smooth(history: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over full windows: ``s_j = mean(h[j : j + window])``.

    ``len(s) = max(0, len(h) - window + 1)``; a window holding a non-finite value gives NaN.

    >>> smooth([4.0, 2.0, 3.0, 1.0], 2)
    [3.0, 2.5, 2.0]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out = []
    for j in range(len(history) - window + 1):
        chunk = [float(v) for v in history[j : j + window]]
        out.append(sum(chunk) / window if all(math.isfinite(v) for v in chunk) else math.nan)
    return out


def steps_since_low(history: Sequence[float], window: int, min_delta: float) -> int | None:
    """Smoothed steps since the last new low; ``None`` before the first finite smoothed value.

    A smoothed value ``s`` is a new low when ``s < best - min_delta * |best|``; the first finite
    one sets ``best``. NaN values never make a new low (they count as steps without progress).

    >>> steps_since_low([5, 4, 3, 3.01, 2.99], window=1, min_delta=0.01)
    2
    """
    best: float | None = None
    last_low: int | None = None
    smoothed = smooth(history, window)
    for j, value in enumerate(smoothed):
        if not math.isfinite(value):
            continue
        if best is None or value < best - min_delta * abs(best):
            best, last_low = value, j
    return None if last_low is None else len(smoothed) - 1 - last_low


def should_switch(history: Sequence[float], cfg: AutoSwitchConfig) -> bool:
    """Leave the compression stage now? ``history[i]`` is the metric after step ``i + 1`` of it.

    True when ``cfg.enabled``, at least ``cfg.min_steps`` steps ran, and the moving average over
    ``cfg.window`` steps has made no new low (relative improvement > ``cfg.min_delta``) for
    ``cfg.patience`` steps. Steps before the first full window do not count towards patience.

    >>> from egrc_lite.config import AutoSwitchConfig
    >>> cfg = AutoSwitchConfig(enabled=True, window=2, patience=3, min_delta=0.0, min_steps=0)
    >>> should_switch([5, 4, 3, 2, 1, 0.5], cfg), should_switch([5, 4, 3, 3, 3, 3, 3], cfg)
    (False, True)
    """
    if not cfg.enabled or len(history) < cfg.min_steps:
        return False
    since = steps_since_low(history, cfg.window, cfg.min_delta)
    return since is not None and since >= cfg.patience


def _to_json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _from_json_float(value: Any) -> float:
    return math.nan if value is None else float(value)


class AutoSwitch:
    """Per-stage tracker: feed one metric value per step, get the switch decision.

    ``None`` or non-finite values are stored as NaN (no progress that step). A disabled config
    never switches.

    >>> from egrc_lite.config import AutoSwitchConfig
    >>> sw = AutoSwitch(AutoSwitchConfig(enabled=True, window=1, patience=2, min_steps=0))
    >>> [sw.update(v) for v in (3.0, 2.0, 2.0, 2.0)]
    [False, False, False, True]
    >>> AutoSwitch.from_dict(sw.to_dict(), sw.cfg).history
    [3.0, 2.0, 2.0, 2.0]
    """

    def __init__(self, cfg: AutoSwitchConfig, history: list[float] | None = None) -> None:
        self.cfg = cfg
        self.history: list[float] = history if history is not None else []

    def applies(self, stage: StagePlan) -> bool:
        """Whether this tracker may end ``stage`` early (enabled, and a compression stage)."""
        return self.cfg.enabled and stage.mode == "compress"

    def update(self, value: float | None) -> bool:
        self.history.append(math.nan if value is None or not math.isfinite(value) else float(value))
        return should_switch(self.history, self.cfg)

    def reset(self) -> None:
        self.history.clear()

    @property
    def smoothed(self) -> list[float]:
        return smooth(self.history, self.cfg.window)

    def to_dict(self) -> dict[str, Any]:
        return {"history": [_to_json_float(v) for v in self.history]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], cfg: AutoSwitchConfig) -> AutoSwitch:
        return cls(cfg, [_from_json_float(v) for v in data.get("history", [])])


@dataclass
class ScheduleState:
    """Where a run is: current stage (index into the plan), steps done, metric history.

    The runner calls :meth:`observe` once per optimiser step of the current stage; it returns
    the reason the stage just ended (``"steps"`` or ``"auto_switch"``) or ``None``. ``to_dict``
    gives plain JSON types (NaN as ``null``) for the resume file.

    >>> from egrc_lite.config import ScheduleConfig
    >>> cfg = ScheduleConfig.model_validate({"stages": [{"mode": "compress", "steps": 2},
    ...                                                 {"mode": "explore", "steps": 1}]})
    >>> plan, st = plan_stages(cfg), ScheduleState()
    >>> [st.observe(plan, cfg.auto_switch, 1.0) for _ in range(3)], st.done(plan)
    ([None, 'steps', 'steps'], True)
    >>> ScheduleState.from_dict(st.to_dict()) == st
    True
    """

    stage_index: int = 0
    stage_step: int = 0
    global_step: int = 0
    history: list[float] = field(default_factory=list)
    finished: list[dict[str, Any]] = field(default_factory=list)

    def current(self, plan: Sequence[StagePlan]) -> StagePlan | None:
        return plan[self.stage_index] if self.stage_index < len(plan) else None

    def done(self, plan: Sequence[StagePlan]) -> bool:
        return self.current(plan) is None

    def observe(self, plan: Sequence[StagePlan], cfg: AutoSwitchConfig, metric: float | None = None) -> str | None:
        """Record one finished step of the current stage with its metric; end the stage if due."""
        stage = self.current(plan)
        if stage is None:
            raise ValueError("the schedule is already finished")
        self.stage_step += 1
        self.global_step += 1
        switch = AutoSwitch(cfg, self.history)
        reason = None
        if switch.update(metric) and switch.applies(stage) and self.stage_step < stage.steps:
            reason = "auto_switch"
        elif self.stage_step >= stage.steps:
            reason = "steps"
        if reason is not None:
            self.finished.append(
                {"name": stage.name, "mode": stage.mode, "steps": self.stage_step,
                 "end_step": self.global_step, "reason": reason}
            )
            self.stage_index += 1
            self.stage_step = 0
            self.history = []
        return reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage_index": self.stage_index,
            "stage_step": self.stage_step,
            "global_step": self.global_step,
            "history": [_to_json_float(v) for v in self.history],
            "finished": [dict(f) for f in self.finished],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleState:
        return cls(
            stage_index=int(data.get("stage_index", 0)),
            stage_step=int(data.get("stage_step", 0)),
            global_step=int(data.get("global_step", 0)),
            history=[_from_json_float(v) for v in data.get("history", [])],
            finished=[dict(f) for f in data.get("finished", [])],
        )
