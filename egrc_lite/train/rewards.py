r"""Stage rewards: length shaping, clipping, format and length penalty (method.md s2, s3, s5).

Pure scalar functions (``shape_length``, ``compression_reward``, ``format_ok``,
``length_penalty``, ``exploration_reward``) that hold the formulas. The callables TRL calls with a
batch are in :mod:`egrc_lite.train.reward_funcs`.

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
>>> compression_reward(True, 4096, True, kind="exponential", clip=4096, r=0.5)
0.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

# ---------------------------------------------------------------------------- length shaping


def _exponential(x: float, clip: int, r: float) -> float:
    return math.exp(math.log(r) * x / clip)  # exp(-lambda x), lambda = -ln(r)/L


def _linear(x: float, clip: int, r: float) -> float:
    return 1.0 - (1.0 - r) * x / clip


def _cosine(x: float, clip: int, r: float) -> float:
    return r + (1.0 - r) * (1.0 + math.cos(math.pi * x / clip)) / 2.0


SHAPES: dict[str, Callable[[float, int, float], float]] = {
    "exponential": _exponential,
    "linear": _linear,
    "cosine": _cosine,
}


def shape_length(kind: str, length: int, clip: int, r: float) -> float:
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
    if clip <= 0:
        raise ValueError(f"length clip must be > 0, got {clip}")
    if not 0.0 < r < 1.0:
        raise ValueError(f"r (reward at the clip length) must be in (0, 1), got {r}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    x = min(length, clip)
    value = fn(float(x), clip, r)
    return min(1.0, max(r, value))  # guard rounding at the ends: f in [r, 1]


def is_clipped(length: int, length_clip: int) -> bool:
    """A completion is clipped when it reached the generation cap ``L`` (see the module doc).

    >>> is_clipped(4095, 4096), is_clipped(4096, 4096)
    (False, True)
    """
    return length >= length_clip


def compression_reward(correct: bool, length: int, clipped: bool, *, kind: str, clip: int, r: float) -> float:
    """Stage-1 reward ``R(y) = R_answer(y) * f(|y|)``, and ``0`` when clipped (method.md s2).

    >>> compression_reward(True, 0, False, kind="linear", clip=100, r=0.5)
    1.0
    >>> compression_reward(False, 10, False, kind="linear", clip=100, r=0.5)
    0.0
    """
    if not correct or clipped:
        return 0.0
    return shape_length(kind, length, clip, r)


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
    length: int, clip: int, per_unit: float = 0.25, unit: int = 1000, mode: str = "continuous"
) -> float:
    """Exploration length penalty ``R_length <= 0`` (method.md s3).

    * continuous: ``-per_unit * max(0, |y| - L) / unit``
    * step:       ``-per_unit * ceil(max(0, |y| - L) / unit)`` (per started unit)

    >>> length_penalty(5596, 4096), length_penalty(5596, 4096, mode="step"), length_penalty(100, 4096)
    (-0.375, -0.5, 0.0)
    """
    if unit <= 0:
        raise ValueError(f"length penalty unit must be > 0, got {unit}")
    over = max(0, length - clip) / unit
    if mode == "continuous":
        units = over
    elif mode == "step":
        units = math.ceil(over)
    else:
        raise ValueError(f"unknown length penalty mode {mode!r}; valid modes: continuous, step")
    return -per_unit * units if units > 0 else 0.0


@dataclass(frozen=True)
class ExplorationParts:
    """The three parts of the exploration reward and their sum."""

    format: float
    answer: float
    length: float

    @property
    def total(self) -> float:
        return self.format + self.answer + self.length


def exploration_reward(
    response: str,
    correct: bool,
    length: int,
    *,
    clip: int,
    format_reward: float = 0.1,
    per_unit: float = 0.25,
    unit: int = 1000,
    mode: str = "continuous",
) -> ExplorationParts:
    r"""Stage-2 reward ``R = R_format + R_answer + R_length`` (method.md s3).

    ``R_format = format_reward`` when :func:`format_ok`, ``R_answer = 1`` when correct, and
    ``R_length = length_penalty(length, clip, per_unit, unit, mode)``. No clipping here: the
    exploration cap is ``2L`` and lengths past ``L`` are penalised instead.

    >>> p = exploration_reward("ok</think>\\boxed{4}", True, 5096, clip=4096)
    >>> p.format, p.answer, p.length, round(p.total, 2)
    (0.1, 1.0, -0.25, 0.85)
    """
    return ExplorationParts(
        format=format_reward if format_ok(response) else 0.0,
        answer=1.0 if correct else 0.0,
        length=length_penalty(length, clip, per_unit, unit, mode),
    )
