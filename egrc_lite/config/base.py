"""The config's building blocks: its value types, the defaults the paper gives or we chose, and its error."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from egrc_lite.errors import EgrcError

StageMode = Literal["compress", "explore", "entangled"]
ShapeKind = Literal["exponential", "linear", "cosine"]
AnswerRule = Literal["boxed", "last_number"]
LengthTerm = Literal["penalty", "none", "dapo_soft", "l1", "kimi"]
"""The exploration stage's length term (``reward.length_term``): the method's penalty or a baseline's
(:data:`egrc_lite.train.rewards.LENGTH_TERMS`, presets/baselines/)."""

PAPER_TEMPERATURE = 0.6  # sampling of evaluation, stage 1 and analysis (method.md s6) [our default]
PAPER_TOP_P = 0.95
EXPLORE_TEMPERATURE = 1.0  # stage 2's relaxed sampling (method.md s3) [our default]
EXPLORE_TOP_P = 1.0
EXPLORE_EPSILON_HIGH = 0.28  # clip-higher of stage 2 (method.md s3)

DEFAULT_PROMPT_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
DEFAULT_BUDGET_PROMPT = "Think for {budget} tokens."  # L1/LCPO's budget sentence (Aggarwal & Welleck 2025)

DEFAULT_CONNECTORS = [
    "wait", "alternatively", "therefore", "but", "however", "so", "hmm", "thus", "hence",
    "then", "maybe", "perhaps", "actually", "also", "now", "first", "next", "finally",
    "let", "since", "because", "check", "verify", "again", "another", "instead",
]


LOGGER_PACKAGES: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard", "tensorboardX"),  # transformers' TensorBoardCallback takes either
    "wandb": ("wandb",),
    "trackio": ("trackio",),
}
"""The loggers ``train.report_to`` may name, each with the modules that provide it (any one suffices)."""
LOGGERS_INSTALL = "pip install 'egrc-lite[loggers]'"


class ConfigError(EgrcError, ValueError):
    """A user mistake in a preset, an override or a flag; its message is one line."""


class StrictModel(BaseModel):
    """The base of every config section: unknown keys are errors, and so are bad values assigned later."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
