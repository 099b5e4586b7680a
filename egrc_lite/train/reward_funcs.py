r"""TRL reward callables for the stages (method.md s2, s3, s5).

Picklable callables with TRL's reward signature
``__call__(prompts, completions, completion_ids, **kwargs) -> list[float]`` that grade a batch with
:func:`egrc_lite.grading.grade_many` and apply the formulas of :mod:`egrc_lite.train.rewards` per
completion. Each sets ``__name__``, so ``GRPOTrainer`` logs it as ``rewards/<name>/mean``.
Length is always ``len(completion_ids[i])``.

This module imports neither torch nor TRL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from egrc_lite.train.rewards import (
    compression_reward, format_ok, is_clipped, length_penalty, shape_length,
)

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import RewardConfig, StageConfig


def completion_text(completion: Any) -> str:
    r"""Text of a TRL completion: a plain string, or a conversation (list of message dicts).

    Conversational completions join the ``content`` of every message (multimodal content parts
    contribute their ``text``).

    >>> completion_text([{"role": "assistant", "content": "hi</think>\\boxed{1}"}])
    'hi</think>\\boxed{1}'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    parts: list[str] = []
    for message in completion:
        content = message.get("content", "") if isinstance(message, dict) else message
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(content if isinstance(content, str) else "")
    return "\n".join(parts)


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


def _grade(texts: list[str], golds: list[str], answer_rule: str) -> list[bool]:
    from egrc_lite import grading  # lazy: grading pulls in math-verify

    return grading.grade_each(zip(texts, golds), answer_rule=answer_rule)


def _log(kwargs: dict[str, Any], name: str, value: float) -> None:
    log_metric = kwargs.get("log_metric")
    if callable(log_metric):
        log_metric(name, value)


class _TrlReward:
    """Base: holds the name TRL logs under; subclasses implement ``__call__``."""

    name = "reward"

    def __init__(self) -> None:
        self.__name__ = self.name

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

    def __init__(self, cfg: RewardConfig, length_clip: int, answer_key: str = "answer") -> None:
        super().__init__()
        shape_length(cfg.shape, 0, length_clip, cfg.r)  # validate now, not at the first batch
        self.shape, self.r, self.answer_rule = cfg.shape, cfg.r, cfg.answer_rule
        self.length_clip, self.answer_key = length_clip, answer_key

    def reward(self, correct: Sequence[bool], lengths: Sequence[int]) -> list[float]:
        """Rewards from correctness and lengths (no grading)."""
        return [
            compression_reward(
                ok, n, is_clipped(n, self.length_clip), kind=self.shape, clip=self.length_clip, r=self.r
            )
            for ok, n in zip(correct, lengths, strict=True)
        ]

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float]:
        texts = [completion_text(c) for c in completions or []]
        lengths = _lengths(completion_ids, len(texts), self.name)
        correct = _grade(texts, _golds(kwargs, self.answer_key, len(texts), self.name), self.answer_rule)
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

    def __init__(self, cfg: RewardConfig) -> None:
        super().__init__()
        self.value = cfg.format_reward

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float]:
        return [self.value if format_ok(completion_text(c)) else 0.0 for c in completions or []]


class AnswerReward(_TrlReward):
    """Exploration ``R_answer``: 1 when the final answer matches ``kwargs[answer_key]``, else 0."""

    name = "answer"

    def __init__(self, cfg: RewardConfig, answer_key: str = "answer") -> None:
        super().__init__()
        self.answer_rule, self.answer_key = cfg.answer_rule, answer_key

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float]:
        texts = [completion_text(c) for c in completions or []]
        golds = _golds(kwargs, self.answer_key, len(texts), self.name)
        return [1.0 if ok else 0.0 for ok in _grade(texts, golds, self.answer_rule)]


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


REWARD_MODES = ("compress", "explore", "entangled")


def build_reward_funcs(mode: str, reward_cfg: RewardConfig, stage_cfg: StageConfig) -> list[_TrlReward]:
    """The TRL reward functions of one stage; TRL sums them (weights 1) into ``R``.

    * ``compress``:  ``[CompressionReward]``; advantages ``absolute_positive``.
    * ``explore``:   ``[FormatReward, AnswerReward, LengthPenaltyReward]``; ``group_relative``.
    * ``entangled``: ``[CompressionReward]``; the ``entangled`` advantage reads correctness as
      ``R > 0``, exact because a correct unclipped completion gets ``f >= r > 0`` (method.md s5).

    ``L`` is ``stage_cfg.length_clip`` in every mode.

    >>> from egrc_lite.config import RewardConfig, StageConfig
    >>> [f.__name__ for f in build_reward_funcs("explore", RewardConfig(), StageConfig(mode="explore", steps=1))]
    ['format', 'answer', 'length']
    """
    clip = stage_cfg.length_clip
    if mode in ("compress", "entangled"):
        return [CompressionReward(reward_cfg, clip)]
    if mode == "explore":
        return [FormatReward(reward_cfg), AnswerReward(reward_cfg), LengthPenaltyReward(reward_cfg, clip)]
    raise ValueError(f"unknown stage mode {mode!r}; valid modes: {', '.join(REWARD_MODES)}")
