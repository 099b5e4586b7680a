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

**Unanswered** (method.md s3): in every stage a completion gives no answer, so it is graded as wrong
(``R_answer = 0``) and is not well formed (``R_format = 0``), when it was *cut at the generation cap*
(``len(completion_ids[i]) >= max_completion_length`` and its last token is no EOS; when the EOS ids
are unknown, every completion that reaches the cap) or when it *never closed its thinking*: no
``</think>`` although the prompt left the model inside ``<think>`` (the chat template opened it,
:func:`template_opens_think`; or a text prompt, or an assistant prefill, that ends with it) or the
completion opened one itself. A ``\boxed{}`` written while thinking is not an answer. The cap and the
stage come from :func:`build_reward_funcs`; the EOS ids and the template from the trainer
(:func:`bind_trainer`).

This module imports neither torch nor TRL.

>>> round(shape_length("exponential", 2048, 4096, 0.5), 4)
0.7071
>>> compression_reward(True, 4096, True, kind="exponential", length_clip=4096, r=0.5)
0.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Sequence
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


def is_truncated(ids: Sequence[int], max_completion_length: int, eos_token_ids: Collection[int] | None = None) -> bool:
    """Cut at the generation cap: ``len(ids) >= max_completion_length`` and the last token is no EOS.

    Without ``eos_token_ids`` (unknown) every completion that reaches the cap counts as cut.

    >>> is_truncated([5, 6, 7], 3), is_truncated([5, 6, 2], 3, eos_token_ids=[2]), is_truncated([5, 6], 3)
    (True, False, False)
    """
    if len(ids) < max_completion_length:
        return False
    return not eos_token_ids or not ids or ids[-1] not in eos_token_ids


def thinking_unclosed(text: str, think_opened: bool = False) -> bool:
    r"""No ``</think>`` although thinking was opened, by the prompt (``think_opened``) or by the text.

    >>> thinking_unclosed("so \\boxed{42}", think_opened=True), thinking_unclosed("so \\boxed{42}")
    (True, False)
    >>> thinking_unclosed("<think>so \\boxed{42}"), thinking_unclosed("a</think>\\boxed{42}", think_opened=True)
    (True, False)
    """
    return _THINK_CLOSE not in text and (think_opened or _THINK_OPEN in text)


def prompt_opens_think(prompt: Any) -> bool:
    r"""Whether a TRL prompt, as the reward function sees it, ends inside ``<think>``: a text prompt (template
    already applied) or a conversation whose last message is an assistant prefill ending with it. A
    conversation's chat template is applied later by TRL; :func:`template_opens_think` covers that case.

    >>> prompt_opens_think("<|Assistant|><think>\n"), prompt_opens_think([{"role": "user", "content": "<think>"}])
    (True, False)
    """
    if isinstance(prompt, str):
        return prompt.rstrip().endswith(_THINK_OPEN)
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict) and prompt[-1].get("role") == "assistant":
        return completion_text(prompt[-1]).rstrip().endswith(_THINK_OPEN)
    return False


def template_opens_think(tokenizer: Any) -> bool:
    """Whether ``tokenizer``'s chat template ends its assistant prefix with ``<think>`` (R1-distill templates do).

    Any tokenizer without a usable chat template gives False.
    """
    apply = getattr(tokenizer, "apply_chat_template", None)
    if not callable(apply):
        return False
    try:
        text = apply([{"role": "user", "content": "What is 1 + 1?"}], tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - no template, a processor that needs other inputs, ...
        return False
    return isinstance(text, str) and text.rstrip().endswith(_THINK_OPEN)


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


REWARD_MODES = ("compress", "explore", "entangled")


def build_reward_funcs(mode: str, reward_cfg: RewardConfig, stage_cfg: StageConfig, *,
                       eos_token_ids: Collection[int] | None = None, think_opened: bool = False) -> list[_TrlReward]:
    r"""The TRL reward functions of one stage; TRL sums them (weights 1) into ``R``.

    * ``compress``:  ``[CompressionReward]``; advantages ``absolute_positive``.
    * ``explore``:   ``[FormatReward, AnswerReward, LengthPenaltyReward]``; ``group_relative``.
    * ``entangled``: ``[CompressionReward]``; the ``entangled`` advantage reads correctness as
      ``R > 0``, exact because a correct unclipped completion gets ``f >= r > 0`` (method.md s5).

    ``L`` is ``stage_cfg.length_clip`` in every mode (an explore stage's is, unless set, the compression
    stage's: :class:`egrc_lite.config.ScheduleConfig`). A completion cut at ``stage_cfg.max_completion_length``
    (without one of ``eos_token_ids``, when given) or whose thinking never closed is unanswered: answer
    and format 0 (the module doc). :func:`bind_trainer` sets the EOS ids and ``think_opened`` later.

    >>> from egrc_lite.config import RewardConfig, StageConfig
    >>> funcs = build_reward_funcs("explore", RewardConfig(), StageConfig(mode="explore", steps=1, length_clip=4))
    >>> [f.__name__ for f in funcs]
    ['format', 'answer', 'length']
    >>> cut = dict(prompts=["q"], completions=["a</think>\\boxed{42} and"], completion_ids=[[0] * 8], answer=["42"])
    >>> [f(**cut) for f in funcs]  # reached the cap of 2L = 8 tokens: unanswered, and penalised
    [[0.0], [0.0], [-0.001]]
    """
    length_clip = stage_cfg.length_clip
    unanswered = {"max_completion_length": stage_cfg.max_completion_length, "eos_token_ids": eos_token_ids,
                  "think_opened": think_opened}
    if mode in ("compress", "entangled"):
        return [CompressionReward(reward_cfg, length_clip, **unanswered)]
    if mode == "explore":
        return [FormatReward(reward_cfg, **unanswered), AnswerReward(reward_cfg, **unanswered),
                LengthPenaltyReward(reward_cfg, length_clip)]
    raise ValueError(f"unknown stage mode {mode!r}; valid modes: {', '.join(REWARD_MODES)}")


def bind_trainer(funcs: Sequence[Any], trainer: Any) -> None:
    """Give egrc-lite's reward callables among ``funcs`` what only the trainer knows: its EOS ids (TRL's
    ``trainer.eos_token_ids``, to tell a completion that ended at the cap from one cut there) and whether
    its chat template opens ``<think>`` (``trainer.processing_class``). Other callables are left alone.

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
