r"""The TRL reward callables of each stage, which apply :mod:`egrc_lite.train.reward_formulas` and, for the
baselines, :mod:`egrc_lite.train.length_control`.

The picklable callables TRL calls with a batch (``CompressionReward``, ``FormatReward``,
``AnswerReward``, ``LengthPenaltyReward``, and the baselines' length terms of :data:`LENGTH_TERMS`;
:func:`build_reward_funcs` picks a stage's) have TRL's
signature ``__call__(prompts, completions, completion_ids, **kwargs) -> list[float]``, grade the batch
at once with :func:`egrc_lite.grading.grade_each` and apply the formulas per completion. Each sets
``__name__``, so ``GRPOTrainer`` logs it as ``rewards/<name>/mean``. Length is always
``len(completion_ids[i])``; what makes a completion clipped or unanswered is in the formulas' module
doc. :func:`bind_trainer` gives them what only the trainer knows (EOS ids, the chat template), and
:func:`set_caps` a stage's tightened cap (``cap_schedule``).

This module imports neither torch nor TRL.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from egrc_lite.data import BUDGET_COLUMN
from egrc_lite.train.length_control import (
    kimi_length_rewards, l1_length_term, overlong_buffer_tokens, soft_overlong_penalty,
)
from egrc_lite.train.reward_formulas import (
    completion_text, compression_reward, format_ok, is_clipped, is_truncated, length_penalty, prompt_opens_think,
    shape_length, template_opens_think, thinking_unclosed,
)

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import RewardConfig, StageConfig


def _lengths(completion_ids: Sequence[Sequence[int]] | None, n: int, name: str) -> list[int]:
    if completion_ids is None or len(completion_ids) != n:
        raise ValueError(f"reward '{name}' needs completion_ids, one token list per completion (got {n} completions)")
    return [len(ids) for ids in completion_ids]


def _golds(kwargs: dict[str, Any], key: str, n: int, name: str) -> list[str]:
    golds = kwargs.get(key)
    if golds is None or len(golds) != n:
        found = ", ".join(sorted(k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric")))
        raise ValueError(
            f"reward '{name}' needs the dataset column '{key}' with one gold answer per completion; "
            f"columns passed: {found or '(none)'}"
        )
    return ["" if g is None else str(g) for g in golds]


def _grade(texts: list[str], golds: list[str], answer_rule: str,
           unanswered: Sequence[bool] | None = None) -> list[bool]:
    """Grader verdicts; an unanswered completion is wrong without being graded."""
    from egrc_lite import grading  # lazy: grading pulls in math-verify

    skip = list(unanswered) if unanswered is not None else [False] * len(texts)
    ask = [i for i, s in enumerate(skip) if not s]
    verdicts = grading.grade_each([(texts[i], golds[i]) for i in ask], answer_rule=answer_rule) if ask else []
    out = [False] * len(texts)
    for i, ok in zip(ask, verdicts, strict=True):
        out[i] = bool(ok)
    return out


def _log(kwargs: dict[str, Any], name: str, value: float) -> None:
    log_metric = kwargs.get("log_metric")
    if callable(log_metric):
        log_metric(name, value)


class _TrlReward:
    """Base: holds the name TRL logs under and what decides that a completion is unanswered (module doc):
    the stage's ``max_completion_length`` (None: never cut), the trainer's ``eos_token_ids`` (None:
    unknown) and ``think_opened`` (the chat template opens ``<think>``). Subclasses implement ``__call__``."""

    name = "reward"

    def __init__(self, max_completion_length: int | None = None, eos_token_ids: Collection[int] | None = None,
                 think_opened: bool = False) -> None:
        self.__name__ = self.name
        self.max_completion_length = max_completion_length
        self.eos_token_ids = tuple(eos_token_ids) if eos_token_ids is not None else None
        self.think_opened = bool(think_opened)

    def unanswered(self, prompts: Any, texts: Sequence[str], completion_ids: Any) -> list[bool]:
        """Per completion: cut at the cap without EOS, or thinking never closed (the module doc)."""
        n = len(texts)
        cut = [False] * n
        if self.max_completion_length is not None:
            _lengths(completion_ids, n, self.name)  # one token list per completion, or a clear error
            cut = [is_truncated(ids, self.max_completion_length, self.eos_token_ids) for ids in completion_ids]
        rows = list(prompts) if isinstance(prompts, (list, tuple)) and len(prompts) == n else [None] * n
        return [c or thinking_unclosed(t, self.think_opened or prompt_opens_think(p))
                for c, t, p in zip(cut, texts, rows, strict=True)]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "__name__")
        return f"{type(self).__name__}({fields})"


class CompressionReward(_TrlReward):
    """Stage-1 reward (method.md s2) with TRL's signature; logged as ``rewards/compression/mean``.

    ``R = f(len)`` for a correct, unclipped completion, else 0; ``f`` from ``cfg.shape`` and
    ``cfg.r``, clipped when ``len(completion_ids[i]) >= length_clip``. Also reports
    ``compress/reached_clip_rate`` and ``compress/accuracy`` through TRL's ``log_metric`` when given.

    >>> from egrc_lite.config import RewardConfig
    >>> fn = CompressionReward(RewardConfig(shape="linear"), length_clip=8)
    >>> fn.__name__, fn.reward([True, True, False], [4, 8, 2])
    ('compression', [0.75, 0.0, 0.0])
    """

    name = "compression"

    def __init__(self, cfg: RewardConfig, length_clip: int, answer_key: str = "answer", **unanswered: Any) -> None:
        super().__init__(**unanswered)
        shape_length(cfg.shape, 0, length_clip, cfg.r)  # validate now, not at the first batch
        self.shape, self.r, self.answer_rule = cfg.shape, cfg.r, cfg.answer_rule
        self.length_clip, self.answer_key = length_clip, answer_key

    def reward(self, correct: Sequence[bool], lengths: Sequence[int]) -> list[float]:
        """Rewards from correctness and lengths (no grading)."""
        return [
            compression_reward(
                ok, n, is_clipped(n, self.length_clip), kind=self.shape, length_clip=self.length_clip, r=self.r
            )
            for ok, n in zip(correct, lengths, strict=True)
        ]

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float]:
        texts = [completion_text(c) for c in completions or []]
        lengths = _lengths(completion_ids, len(texts), self.name)
        golds = _golds(kwargs, self.answer_key, len(texts), self.name)
        correct = _grade(texts, golds, self.answer_rule, self.unanswered(prompts, texts, completion_ids))
        if texts:
            _log(kwargs, "compress/reached_clip_rate", sum(is_clipped(n, self.length_clip) for n in lengths) / len(texts))
            _log(kwargs, "compress/accuracy", sum(correct) / len(texts))
        return self.reward(correct, lengths)


class FormatReward(_TrlReward):
    r"""Exploration ``R_format``: ``cfg.format_reward`` when :func:`format_ok`, else 0.

    >>> from egrc_lite.config import RewardConfig
    >>> FormatReward(RewardConfig())(completions=["a</think>\\boxed{1}", "a"], completion_ids=[[1], [2]])
    [0.1, 0.0]
    """

    name = "format"

    def __init__(self, cfg: RewardConfig, **unanswered: Any) -> None:
        super().__init__(**unanswered)
        self.value = cfg.format_reward

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float]:
        texts = [completion_text(c) for c in completions or []]
        skip = self.unanswered(prompts, texts, completion_ids)
        return [self.value if format_ok(t) and not s else 0.0 for t, s in zip(texts, skip, strict=True)]


class AnswerReward(_TrlReward):
    """Exploration ``R_answer``: 1 when the final answer matches ``kwargs[answer_key]``, else 0."""

    name = "answer"

    def __init__(self, cfg: RewardConfig, answer_key: str = "answer", **unanswered: Any) -> None:
        super().__init__(**unanswered)
        self.answer_rule, self.answer_key = cfg.answer_rule, answer_key

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float]:
        texts = [completion_text(c) for c in completions or []]
        golds = _golds(kwargs, self.answer_key, len(texts), self.name)
        skip = self.unanswered(prompts, texts, completion_ids)
        return [1.0 if ok else 0.0 for ok in _grade(texts, golds, self.answer_rule, skip)]


class LengthPenaltyReward(_TrlReward):
    """Exploration ``R_length = -per_unit * max(0, len - L) / unit`` (or per started unit).

    >>> from egrc_lite.config import RewardConfig
    >>> LengthPenaltyReward(RewardConfig(), length_clip=2)(completions=["a", "b"], completion_ids=[[0] * 1002, [0]])
    [-0.25, 0.0]
    """

    name = "length"

    def __init__(self, cfg: RewardConfig, length_clip: int) -> None:
        super().__init__()
        self.length_clip = length_clip
        self.per_unit, self.unit, self.mode = cfg.length_penalty, cfg.length_penalty_unit, cfg.length_penalty_mode

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float]:
        lengths = _lengths(completion_ids, len(completions or []), self.name)
        return [length_penalty(n, self.length_clip, self.per_unit, self.unit, self.mode) for n in lengths]


class SoftOverlongReward(_TrlReward):
    """DAPO's soft overlong punishment (:func:`~egrc_lite.train.length_control.soft_overlong_penalty`) times
    ``cfg.length_weight``, with ``L_max`` the stage's cap and ``L_cache = cfg.overlong_buffer`` of it.

    >>> from egrc_lite.config import RewardConfig
    >>> fn = SoftOverlongReward(RewardConfig(overlong_buffer=0.5), max_completion_length=8)
    >>> fn(completions=["a"] * 3, completion_ids=[[0] * 4, [0] * 6, [0] * 8])
    [0.0, -0.5, -1.0]
    """

    name = "dapo_overlong"

    def __init__(self, cfg: RewardConfig, **unanswered: Any) -> None:
        super().__init__(**unanswered)
        if self.max_completion_length is None:
            raise ValueError("reward.length_term=dapo_soft needs the stage's max_completion_length (L_max)")
        self.buffer, self.weight = cfg.overlong_buffer, cfg.length_weight

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float]:
        lengths = _lengths(completion_ids, len(completions or []), self.name)
        cap = self.max_completion_length
        buffer = overlong_buffer_tokens(self.buffer, cap)
        return [self.weight * soft_overlong_penalty(n, cap, buffer) for n in lengths]


class L1LengthReward(_TrlReward):
    """L1's length term ``-cfg.l1_alpha * |budget - len|``, ``budget`` from the dataset column ``token_budget``
    (the number the prompt states). With :class:`AnswerReward` it makes LCPO-Exact's
    ``1[correct] - alpha |n_gold - n|``.

    >>> from egrc_lite.config import RewardConfig
    >>> L1LengthReward(RewardConfig(l1_alpha=0.1))(completions=["a", "b"], completion_ids=[[0] * 3, [0] * 9],
    ...                                             token_budget=[5, 5])
    [-0.2, -0.4]
    """

    name = "l1_length"

    def __init__(self, cfg: RewardConfig, **unanswered: Any) -> None:
        super().__init__(**unanswered)
        self.alpha = cfg.l1_alpha

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float]:
        lengths = _lengths(completion_ids, len(completions or []), self.name)
        budgets = kwargs.get(BUDGET_COLUMN)
        if budgets is None or len(budgets) != len(lengths) or any(b is None for b in budgets):
            raise ValueError(f"reward '{self.name}' needs the dataset column '{BUDGET_COLUMN}' with each prompt's "
                             "token budget (reward.length_term=l1 puts it there when the run builds its dataset)")
        return [l1_length_term(n, int(b), self.alpha) for n, b in zip(lengths, budgets, strict=True)]


class KimiLengthReward(_TrlReward):
    """Kimi k1.5's length reward (:func:`~egrc_lite.train.length_control.kimi_length_rewards`) per group of
    ``group_size`` consecutive completions (TRL's layout: the G completions of a prompt are adjacent, and a
    process's batch holds whole groups), times ``cfg.length_weight``; grades the completions itself
    (unanswered ones are wrong). :func:`bind_trainer` sets ``group_size`` to the trainer's G.
    """

    name = "kimi_length"

    def __init__(self, cfg: RewardConfig, group_size: int | None = None, answer_key: str = "answer",
                 **unanswered: Any) -> None:
        super().__init__(**unanswered)
        self.group_size, self.weight, self.answer_rule, self.answer_key = (
            group_size, cfg.length_weight, cfg.answer_rule, answer_key)

    def reward(self, correct: Sequence[bool], lengths: Sequence[int]) -> list[float]:
        """Rewards from correctness and lengths, group by group (no grading).

        >>> from egrc_lite.config import RewardConfig
        >>> KimiLengthReward(RewardConfig(), group_size=2).reward([True, True, True, False], [2, 4, 6, 6])
        [0.5, -0.5, 0.0, 0.0]
        """
        g = self.group_size
        if g is None or g < 1:
            raise ValueError(f"reward '{self.name}' needs the group size G (bind_trainer gives it the trainer's)")
        if len(lengths) % g:
            raise ValueError(f"reward '{self.name}': a batch of {len(lengths)} completions is not whole groups of {g}")
        out: list[float] = []
        for start in range(0, len(lengths), g):
            out += kimi_length_rewards(lengths[start:start + g], correct[start:start + g])
        return [self.weight * v for v in out]

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float]:
        texts = [completion_text(c) for c in completions or []]
        lengths = _lengths(completion_ids, len(texts), self.name)
        golds = _golds(kwargs, self.answer_key, len(texts), self.name)
        if isinstance(prompts, (list, tuple)) and len(prompts) == len(texts) and self.group_size:
            g = self.group_size
            if any(prompts[i] != prompts[i - i % g] for i in range(len(prompts))):
                raise ValueError(f"reward '{self.name}': the batch's groups of {g} consecutive completions do not "
                                 "share their prompt; the group min/max length would mix prompts")
        correct = _grade(texts, golds, self.answer_rule, self.unanswered(prompts, texts, completion_ids))
        return self.reward(correct, lengths)


LENGTH_TERMS: dict[str, type[_TrlReward] | None] = {
    "penalty": LengthPenaltyReward,
    "none": None,
    "dapo_soft": SoftOverlongReward,
    "l1": L1LengthReward,
    "kimi": KimiLengthReward,
}
"""``reward.length_term``: the exploration stage's length term, the method's (``penalty``, method.md s3), none,
or a baseline's (presets/baselines/)."""

REWARD_MODES = ("compress", "explore", "entangled")


def _length_term(reward_cfg: RewardConfig, length_clip: int, group_size: int | None,
                 unanswered: dict[str, Any]) -> list[_TrlReward]:
    term = reward_cfg.length_term
    if term not in LENGTH_TERMS:
        raise ValueError(f"unknown length term {term!r}; valid terms: {', '.join(LENGTH_TERMS)}")
    cls = LENGTH_TERMS[term]
    if cls is None:
        return []
    if cls is LengthPenaltyReward:
        return [LengthPenaltyReward(reward_cfg, length_clip)]
    if cls is KimiLengthReward:
        return [KimiLengthReward(reward_cfg, group_size, **unanswered)]
    return [cls(reward_cfg, **unanswered)]


def build_reward_funcs(mode: str, reward_cfg: RewardConfig, stage_cfg: StageConfig, *,
                       eos_token_ids: Collection[int] | None = None, think_opened: bool = False,
                       group_size: int | None = None) -> list[_TrlReward]:
    r"""The TRL reward functions of one stage; TRL sums them (weights 1) into ``R``.

    * ``compress``:  ``[CompressionReward]``; advantages ``absolute_positive``.
    * ``explore``:   ``[FormatReward, AnswerReward, <length term>]``; ``group_relative``. The length term is
      ``reward.length_term`` (:data:`LENGTH_TERMS`): the method's ``LengthPenaltyReward`` by default.
    * ``entangled``: ``[CompressionReward]``; the ``entangled`` advantage reads correctness as
      ``R > 0``, exact because a correct unclipped completion gets ``f >= r > 0`` (method.md s5).

    ``L`` is ``stage_cfg.length_clip`` in every mode (an explore stage's is, unless set, the compression
    stage's: :class:`egrc_lite.config.ScheduleConfig`). A completion cut at ``stage_cfg.max_completion_length``
    (without one of ``eos_token_ids``, when given) or whose thinking never closed is unanswered: answer
    and format 0 (the module doc). :func:`bind_trainer` sets the EOS ids, ``think_opened`` and the ``kimi``
    term's group size G (``group_size`` here, when known) later.

    >>> from egrc_lite.config import RewardConfig, StageConfig
    >>> funcs = build_reward_funcs("explore", RewardConfig(), StageConfig(mode="explore", steps=1, length_clip=4))
    >>> [f.__name__ for f in funcs]
    ['format', 'answer', 'length']
    >>> cut = dict(prompts=["q"], completions=["a</think>\\boxed{42} and"], completion_ids=[[0] * 8], answer=["42"])
    >>> [f(**cut) for f in funcs]  # reached the cap of 2L = 8 tokens: unanswered, and penalised
    [[0.0], [0.0], [-0.001]]
    >>> [f.__name__ for f in build_reward_funcs("explore", RewardConfig(length_term="dapo_soft"),
    ...                                         StageConfig(mode="explore", steps=1))]
    ['format', 'answer', 'dapo_overlong']
    """
    length_clip = stage_cfg.length_clip
    unanswered = {"max_completion_length": stage_cfg.max_completion_length, "eos_token_ids": eos_token_ids,
                  "think_opened": think_opened}
    if mode in ("compress", "entangled"):
        return [CompressionReward(reward_cfg, length_clip, **unanswered)]
    if mode == "explore":
        return [FormatReward(reward_cfg, **unanswered), AnswerReward(reward_cfg, **unanswered),
                *_length_term(reward_cfg, length_clip, group_size, unanswered)]
    raise ValueError(f"unknown stage mode {mode!r}; valid modes: {', '.join(REWARD_MODES)}")


def set_caps(funcs: Sequence[Any], length_clip: int, max_completion_length: int) -> None:
    """Give egrc-lite's reward callables among ``funcs`` a stage's tightened clip ``L`` and cap (``cap_schedule``):
    what makes a completion unanswered, clipped, penalised or, for ``dapo_soft``, where ``L_max`` is.

    >>> from egrc_lite.config import RewardConfig
    >>> fn = CompressionReward(RewardConfig(), length_clip=8, max_completion_length=8)
    >>> set_caps([fn, len], 6, 6)
    >>> fn.length_clip, fn.max_completion_length
    (6, 6)
    """
    for fn in funcs:
        if isinstance(fn, _TrlReward):
            fn.max_completion_length = max_completion_length if fn.max_completion_length is not None else None
            if hasattr(fn, "length_clip"):
                fn.length_clip = length_clip


def bind_trainer(funcs: Sequence[Any], trainer: Any) -> None:
    """Give egrc-lite's reward callables among ``funcs`` what only the trainer knows: its EOS ids (TRL's
    ``trainer.eos_token_ids``, to tell a completion that ended at the cap from one cut there), whether
    its chat template opens ``<think>`` (``trainer.processing_class``) and, for the ``kimi`` term, its group
    size G (``trainer.num_generations``). Other callables are left alone.

    >>> class T:
    ...     eos_token_ids, processing_class = [2], None
    >>> from egrc_lite.config import RewardConfig
    >>> fn = AnswerReward(RewardConfig(), max_completion_length=3)
    >>> bind_trainer([fn, len], T())
    >>> fn.eos_token_ids, fn.think_opened
    ((2,), False)
    """
    eos = getattr(trainer, "eos_token_ids", None)
    eos_ids = (eos,) if isinstance(eos, int) else tuple(eos) if eos else None
    think_opened = template_opens_think(getattr(trainer, "processing_class", None))
    for fn in funcs:
        if isinstance(fn, _TrlReward):
            fn.eos_token_ids, fn.think_opened = eos_ids, think_opened
        if isinstance(fn, KimiLengthReward) and getattr(trainer, "num_generations", None):
            fn.group_size = int(trainer.num_generations)
