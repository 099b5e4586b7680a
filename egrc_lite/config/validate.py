"""The whole config and its validation: unknown keys and bad values become one-line ConfigErrors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from egrc_lite.config.base import ConfigError, StrictModel
from egrc_lite.config.sections import (
    AnalysisConfig, DataConfig, LoraSettings, ModelConfig, RewardConfig, TrainConfig, UnslothConfig,
)
from egrc_lite.config.stages import ScheduleConfig


class EgrcConfig(StrictModel):
    description: str = ""
    backend: Literal["auto", "hf", "unsloth"] = "auto"
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    data: DataConfig = Field(default_factory=DataConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    unsloth: UnslothConfig = Field(default_factory=UnslothConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)


def check_keys(data: Any, model: type[BaseModel] = EgrcConfig, prefix: str = "") -> None:
    """Raise ConfigError for the first key that ``model`` does not define.

    >>> try:
    ...     check_keys({"train": {"lr": 1}})
    ... except ConfigError as err:
    ...     print(str(err)[:60])
    unknown config key 'train.lr'; valid keys under 'train': dro
    """
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            where = f"under '{prefix[:-1]}'" if prefix else "at the top level"
            raise ConfigError(f"unknown config key '{path}'; valid keys {where}: {', '.join(sorted(fields))}")
        sub = _submodel(fields[key].annotation)
        if sub is None:
            continue
        if isinstance(value, list):
            for i, item in enumerate(value):
                check_keys(item, sub, f"{path}.{i}.")
        else:
            check_keys(value, sub, f"{path}.")


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``annotation`` (``X``, ``list[X]``, ``X | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def validate_config(data: dict[str, Any]) -> EgrcConfig:
    """Validate a merged config dict, turning pydantic errors into one-line ConfigErrors."""
    check_keys(data)
    try:
        return EgrcConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(config)"
        raise ConfigError(f"invalid config value at '{loc}': {first['msg']} (got {first.get('input')!r})") from None
