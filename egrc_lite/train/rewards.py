r"""Stage rewards: the formulas, and the TRL reward callables that apply them (method.md s2, s3, s5).

Pure scalar functions hold the formulas: ``shape_length``, ``compression_reward``, ``format_ok``,
``length_penalty``. The picklable callables TRL calls with a batch (``CompressionReward``,
``FormatReward``, ``AnswerReward``, ``LengthPenaltyReward``; :func:`build_reward_funcs` picks a
stage's) have TRL's signature ``__call__(prompts, completions, completion_ids, **kwargs) ->
list[float]``, grade the batch at once with :func:`egrc_lite.grading.grade_each` and apply the
formulas per completion. Each sets ``__name__``, so ``GRPOTrainer`` logs it as
``rewards/<name>/mean``.

Length is always ``len(completion_ids[i])``: generated tokens, think and answer included.

**Clipping** (method.md s2, "a completion that reaches L without a final answer gets
reward 0"): a completion is *clipped* when ``len(completion_ids[i]) >= length_clip``, whatever
its text. In the compression stage generation stops at ``L`` tokens, so reaching ``L`` means the
model did not finish by itself; we do not try to rescue an answer from a cut-off text (under
``answer_rule="last_number"`` any number would count as an answer, and under ``boxed`` a cut-off
text may still be mid-answer). The one case this misjudges, an EOS emitted as token ``L``
exactly, is rare and errs on the side of compression.

This module imports neither torch nor TRL.

>>> round(shape_length("exponential", 2048, 4096, 0.5), 4)
0.7071
>>> compression_reward(True, 4096, True, kind="exponential", length_clip=4096, r=0.5)
0.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import RewardConfig, StageConfig


# ---------------------------------------------------------------------------- length shaping


def _exponential(x: float, length_clip: int, r: float) -> float:
    return math.exp(math.log(r) * x / length_clip)  # exp(-lambda x), lambda = -ln(r)/L


def _linear(x: float, length_clip: int, r: float) -> float:
    return 1.0 - (1.0 - r) * x / length_clip


def _cosine(x: float, length_clip: int, r: float) -> float:
    return r + (1.0 - r) * (1.0 + math.cos(math.pi * x / length_clip)) / 2.0


SHAPES: dict[str, Callable[[float, int, float], float]] = {
    "exponential": _exponential,
    "linear": _linear,
    "cosine": _cosine,
}


def shape_length(kind: str, length: int, length_clip: int, r: float) -> float:
    r"""Length shaping ``f(x)`` of a correct answer of ``x = length`` tokens (method.md s2).

    * exponential: ``f(x) = exp(-lambda x)``, ``lambda = -ln(r) / L``
    * linear:      ``f(x) = 1 - (1 - r) x / L``
    * cosine:      ``f(x) = r + (1 - r) (1 + cos(pi x / L)) / 2``

    All three give ``f(0) = 1``, ``f(L) = r`` and are non-increasing on ``[0, L]``. Lengths
    beyond ``L`` are evaluated at ``L`` (so ``f`` stays in ``[r, 1]``; such completions are
    clipped and get 0 from :func:`compression_reward` anyway).

    >>> [round(shape_length(k, 1024, 4096, 0.5), 4) for k in ("exponential", "linear", "cosine")]
    [0.8409, 0.875, 0.9268]
    >>> shape_length("quadratic", 1, 2, 0.5)
    Traceback (most recent call last):
    ...
    ValueError: unknown length shape 'quadratic'; valid shapes: cosine, exponential, linear
    """
    fn = SHAPES.get(kind)
    if fn is None:
        raise ValueError(f"unknown length shape {kind!r}; valid shapes: {', '.join(sorted(SHAPES))}")
    if length_clip <= 0:
        raise ValueError(f"length_clip must be > 0, got {length_clip}")
    if not 0.0 < r < 1.0:
        raise ValueError(f"r (reward at the clip length) must be in (0, 1), got {r}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    x = min(length, length_clip)
    value = fn(float(x), length_clip, r)
    return min(1.0, max(r, value))  # guard rounding at the ends: f in [r, 1]


def is_clipped(length: int, length_clip: int) -> bool:
    """A completion is clipped when it reached the generation cap ``L`` (see the module doc).

    >>> is_clipped(4095, 4096), is_clipped(4096, 4096)
    (False, True)
    """
    return length >= length_clip


def compression_reward(correct: bool, length: int, clipped: bool, *, kind: str, length_clip: int, r: float) -> float:
    """Stage-1 reward ``R(y) = R_answer(y) * f(|y|)``, and ``0`` when clipped (method.md s2).

    >>> compression_reward(True, 0, False, kind="linear", length_clip=100, r=0.5)
    1.0
    >>> compression_reward(False, 10, False, kind="linear", length_clip=100, r=0.5)
    0.0
    """
    if not correct or clipped:
        return 0.0
    return shape_length(kind, length, length_clip, r)


# ---------------------------------------------------------------------------- exploration parts

_THINK_CLOSE = "</think>"
_THINK_OPEN = "<think>"
_BOXED = re.compile(r"\\boxed\s*\{")


def _boxed_contents(text: str) -> list[str | None]:
    """Contents of every ``\\boxed{...}`` in ``text``; ``None`` for one whose braces never close."""
    out: list[str | None] = []
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                out.append(text[start:i])
                break
        else:
            out.append(None)
    return out


def format_ok(response: str) -> bool:
    r"""Well-formed output (method.md s3): a closed ``</think>`` then exactly one final ``\boxed{}``.

    Rules: exactly one ``</think>``; at most one ``<think>``, and only before it (R1-distill
    templates put ``<think>`` in the prompt, so the completion may lack it); the text after
    ``</think>`` holds exactly one ``\boxed{...}`` with balanced braces and non-empty content.

    >>> format_ok("<think>2+2 is 4</think>The answer is \\boxed{4}.")
    True
    >>> format_ok("2+2 is 4</think>\\boxed{4} or \\boxed{5}"), format_ok("\\boxed{4}")
    (False, False)
    """
    if response.count(_THINK_CLOSE) != 1:
        return False
    think, answer = response.split(_THINK_CLOSE)
    if _THINK_OPEN in answer or think.count(_THINK_OPEN) > 1:
        return False
    boxes = _boxed_contents(answer)
    return len(boxes) == 1 and boxes[0] is not None and boxes[0].strip() != ""


def length_penalty(
    length: int, length_clip: int, per_unit: float = 0.25, unit: int = 1000, mode: str = "continuous"
) -> float:
    """Exploration length penalty ``R_length <= 0`` (method.md s3).

    * continuous: ``-per_unit * max(0, |y| - L) / unit``
    * step:       ``-per_unit * ceil(max(0, |y| - L) / unit)`` (per started unit)

    >>> length_penalty(5596, 4096), length_penalty(5596, 4096, mode="step"), length_penalty(100, 4096)
    (-0.375, -0.5, 0.0)
    """
    if unit <= 0:
        raise ValueError(f"length penalty unit must be > 0, got {unit}")
    over = max(0, length - length_clip) / unit
    if mode == "continuous":
        units = over
    elif mode == "step":
        units = math.ceil(over)
    else:
        raise ValueError(f"unknown length penalty mode {mode!r}; valid modes: continuous, step")
    return -per_unit * units if units > 0 else 0.0


# ---------------------------------------------------------------------------- TRL callables
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
                ok, n, is_clipped(n, self.length_clip), kind=self.shape, length_clip=self.length_clip, r=self.r
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
    length_clip = stage_cfg.length_clip
    if mode in ("compress", "entangled"):
        return [CompressionReward(reward_cfg, length_clip)]
    if mode == "explore":
        return [FormatReward(reward_cfg), AnswerReward(reward_cfg), LengthPenaltyReward(reward_cfg, length_clip)]
    raise ValueError(f"unknown stage mode {mode!r}; valid modes: {', '.join(REWARD_MODES)}")
