"""Typed configuration: the only home of defaults, those of eval, analyze and sweep too.

The modules: ``base`` (value types, the defaults, ConfigError), ``sections`` (model, LoRA, data, reward,
train, unsloth, analysis), ``stages`` (the schedule), ``validate`` (the whole config and its checks) and
``commands`` (eval, sweep and analyze settings). Import from here: every public name is re-exported. May import: errors.

Every value the paper leaves open carries the default of ``docs/method.md`` and is
marked ``[our default]`` in its description. Unknown keys are rejected with a
message that names the key and lists the valid ones.

Precedence, lowest first: the defaults here < the preset chain (a preset's
``extends`` first) < ``--set dotted.key=value`` overrides in the order given <
explicit command-line flags such as ``--model`` or ``--backend``.

>>> cfg = EgrcConfig.model_validate({"schedule": {"stages": [{"mode": "explore", "steps": 3}]}})
>>> cfg.schedule.stages[0].temperature, cfg.schedule.stages[0].max_completion_length
(1.0, 8192)
"""

from egrc_lite.config.base import (
    DEFAULT_BUDGET_PROMPT, DEFAULT_CONNECTORS, DEFAULT_PROMPT_SUFFIX, EXPLORE_EPSILON_HIGH, EXPLORE_TEMPERATURE,
    EXPLORE_TOP_P, LOGGER_PACKAGES, LOGGERS_INSTALL, PAPER_TEMPERATURE, PAPER_TOP_P, AnswerRule, ConfigError,
    LengthTerm, ShapeKind, StageMode,
)
from egrc_lite.config.commands import (
    ANALYSIS_PROBLEMS, EVAL_GENERATOR, GENERATION_BATCH, PAPER_BENCHMARKS, AnalysisSettings, EvalSettings,
)
from egrc_lite.config.sections import (
    AnalysisConfig, DataConfig, LoraSettings, ModelConfig, RewardConfig, TinyModelConfig, TrainConfig,
    UnslothConfig, check_loggers_installed,
)
from egrc_lite.config.stages import (
    LENGTH_CLIP_MODES, PAPER_LENGTH_CLIP, AutoSwitchConfig, CapStep, ScheduleConfig, StageConfig,
)
from egrc_lite.config.validate import EgrcConfig, check_keys, validate_config

__all__ = [
    "ANALYSIS_PROBLEMS", "DEFAULT_BUDGET_PROMPT", "DEFAULT_CONNECTORS", "DEFAULT_PROMPT_SUFFIX", "EVAL_GENERATOR",
    "EXPLORE_EPSILON_HIGH", "EXPLORE_TEMPERATURE", "EXPLORE_TOP_P", "GENERATION_BATCH", "LENGTH_CLIP_MODES",
    "LOGGER_PACKAGES", "LOGGERS_INSTALL", "PAPER_BENCHMARKS", "PAPER_LENGTH_CLIP", "PAPER_TEMPERATURE", "PAPER_TOP_P",
    "AnalysisConfig", "AnalysisSettings", "AnswerRule", "AutoSwitchConfig", "CapStep", "ConfigError", "DataConfig",
    "EgrcConfig", "EvalSettings", "LengthTerm", "LoraSettings", "ModelConfig", "RewardConfig", "ScheduleConfig",
    "ShapeKind", "StageConfig", "StageMode", "TinyModelConfig", "TrainConfig", "UnslothConfig",
    "check_keys", "check_loggers_installed", "validate_config",
]
