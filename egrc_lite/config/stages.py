"""The schedule: its stages (compress, explore, entangled), their order and the automatic switch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from egrc_lite.config.base import (
    EXPLORE_EPSILON_HIGH, EXPLORE_TEMPERATURE, EXPLORE_TOP_P, PAPER_TEMPERATURE, PAPER_TOP_P, StageMode, StrictModel,
)

PAPER_LENGTH_CLIP = 4096  # L of the compression stage (method.md s2)
LENGTH_CLIP_MODES = ("compress", "entangled")
"""The modes whose ``length_clip`` an explore stage after them inherits (method.md s3)."""


class CapStep(StrictModel):
    """One tightening of a stage's generation cap (ThinkPrune-style, :func:`egrc_lite.train.schedule.stage_caps`)."""

    at: float = Field(..., gt=0.0, lt=1.0, description="fraction of the stage's steps after which it applies")
    scale: float = Field(..., gt=0.0, lt=1.0, description="the new cap as a fraction of the stage's own cap")


class StageConfig(StrictModel):
    """One stage of the schedule. ``None`` values are filled from the mode (method.md s2-3).

    ``length_clip`` left unset (``None``) is the paper's 4096 for a stage on its own; inside a
    :class:`ScheduleConfig` an explore stage without one takes the ``length_clip`` of the closest
    compress or entangled stage before it in run order (method.md s3). A value filled in here is
    not counted as set (``model_fields_set``), so ``model_dump(exclude_unset=True)`` gives what was
    chosen, not what was derived.

    >>> StageConfig(mode="explore", steps=1).length_clip, StageConfig(mode="explore", steps=1).max_completion_length
    (4096, 8192)
    """

    name: str | None = None
    mode: StageMode
    steps: int = Field(..., ge=0)
    length_clip: int | None = Field(
        None, ge=1, description="L: the compression clip [paper 4096]; an explore stage penalises length beyond "
        "it and, unset, inherits the L of the compression stage before it")
    max_completion_length: int | None = Field(None, ge=1, description="default L (compress) or 2L (explore)")
    temperature: float | None = Field(None, gt=0.0, description="[our default 0.6 compress, 1.0 explore]")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="[our default 0.95 compress, 1.0 explore]")
    beta: float = Field(1.0, gt=0.0, description="scale of the absolute advantage A = beta*R [our default 1]")
    epsilon_low: float = Field(0.2, ge=0.0)
    epsilon_high: float | None = Field(None, ge=0.0, description="[our default 0.2 compress, 0.28 explore]")
    kl_beta: float = Field(0.0, ge=0.0, description="KL to the reference [our default off]")
    learning_rate: float | None = Field(None, gt=0.0, description="defaults to train.learning_rate")
    cap_schedule: list[CapStep] = Field(
        default_factory=list, description="ThinkPrune-style tightening: [{at: 0.33, scale: 0.75}, {at: 0.67, "
        "scale: 0.5}] lowers the cap (and L, where above it) to 3/4 after a third of the stage's steps, to 1/2 "
        "after two thirds")

    @field_validator("cap_schedule")
    @classmethod
    def _check_cap_schedule(cls, value: list[CapStep]) -> list[CapStep]:
        ats, scales = [c.at for c in value], [c.scale for c in value]
        if any(b <= a for a, b in zip(ats, ats[1:])) or any(b >= a for a, b in zip(scales, scales[1:])):
            raise ValueError("cap_schedule entries must have increasing 'at' and decreasing 'scale' (each one tightens "
                             "the cap further), e.g. [{at: 0.33, scale: 0.75}, {at: 0.67, scale: 0.5}]")
        return value

    @model_validator(mode="after")
    def _fill_mode_defaults(self) -> StageConfig:
        explore = self.mode == "explore"
        if self.length_clip is None:
            object.__setattr__(self, "length_clip", PAPER_LENGTH_CLIP)
            self.__pydantic_fields_set__.discard("length_clip")
        fill = {
            "name": self.mode,
            "max_completion_length": 2 * self.length_clip if explore else self.length_clip,
            "temperature": EXPLORE_TEMPERATURE if explore else PAPER_TEMPERATURE,
            "top_p": EXPLORE_TOP_P if explore else PAPER_TOP_P,
            "epsilon_high": EXPLORE_EPSILON_HIGH if explore else self.epsilon_low,
        }
        for key, value in fill.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
                self.__pydantic_fields_set__.discard(key)
        return self


class AutoSwitchConfig(StrictModel):
    """Leave a compression stage early when its smoothed metric stops falling."""

    enabled: bool = False
    metric: Literal["entropy", "length"] = "entropy"
    window: int = Field(5, ge=1, description="moving-average window over steps")
    patience: int = Field(10, ge=1, description="steps without a new low before switching")
    min_delta: float = Field(0.01, ge=0.0, description="relative improvement that counts as falling")
    min_steps: int = Field(10, ge=0, description="never switch before this many steps of the stage")


def _default_stages() -> list[StageConfig]:
    return [StageConfig(mode="compress", steps=40), StageConfig(mode="explore", steps=20)]


class ScheduleConfig(StrictModel):
    stages: list[StageConfig] = Field(default_factory=_default_stages, min_length=1)
    order: list[str] | None = Field(
        None, description="run the stages in this order, by name (e.g. [explore, compress] for the ablation)")
    auto_switch: AutoSwitchConfig = Field(default_factory=AutoSwitchConfig)

    @model_validator(mode="before")
    @classmethod
    def _inherit_length_clip(cls, data: Any) -> Any:
        """An explore stage without its own ``length_clip`` takes that of the closest compress (or entangled)
        stage before it in run order (``order`` applied; stages of 0 steps count), and so a cap of ``2L``
        unless it sets ``max_completion_length``; with none before it (explore first) it keeps 4096
        (method.md s3).

        >>> cfg = ScheduleConfig.model_validate({"stages": [{"mode": "compress", "steps": 1, "length_clip": 2048},
        ...                                                 {"mode": "explore", "steps": 1}]})
        >>> [(s.length_clip, s.max_completion_length) for s in cfg.stages]
        [(2048, 2048), (2048, 4096)]
        >>> cfg = ScheduleConfig.model_validate({"order": ["explore", "compress"], "stages": [
        ...     {"mode": "compress", "steps": 1, "length_clip": 2048}, {"mode": "explore", "steps": 1}]})
        >>> [(s.mode, s.length_clip, s.max_completion_length) for s in cfg.stages]
        [('explore', 4096, 8192), ('compress', 2048, 2048)]
        """
        if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
            return data
        stages = list(data["stages"])
        views = [s.model_dump(exclude_unset=True) if isinstance(s, StageConfig) else s for s in stages]
        if not all(isinstance(v, dict) for v in views):
            return data  # stage validation reports it
        names = [v.get("name") or v.get("mode") for v in views]
        order = data.get("order")
        run_order = range(len(views))
        if (isinstance(order, list) and all(isinstance(n, str) for n in [*order, *names])
                and len(set(names)) == len(names) and sorted(order) == sorted(names)):
            run_order = [names.index(name) for name in order]  # else _apply_order reports it
        clip = None
        for i in run_order:
            view = views[i]
            if view.get("mode") in LENGTH_CLIP_MODES:
                clip = view.get("length_clip") if view.get("length_clip") is not None else PAPER_LENGTH_CLIP
            elif view.get("mode") == "explore" and view.get("length_clip") is None and clip is not None:
                stages[i] = {**view, "length_clip": clip}
        return {**data, "stages": stages}

    @model_validator(mode="after")
    def _apply_order(self) -> ScheduleConfig:
        if self.order is None:
            return self
        names = [s.name for s in self.stages]
        if sorted(self.order) != sorted(names) or len(set(names)) != len(names):
            raise ValueError(f"schedule.order {self.order} must list each stage name once (stages: {names})")
        by_name = {s.name: s for s in self.stages}
        object.__setattr__(self, "stages", [by_name[n] for n in self.order])
        return self
