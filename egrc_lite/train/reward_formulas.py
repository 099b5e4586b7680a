r"""The stage rewards' formulas (method.md s2, s3, s5), pure scalar functions: ``shape_length``,
``compression_reward``, ``format_ok``, ``length_penalty``, and the rules that make a completion
unanswered (``is_truncated``, ``thinking_unclosed``). :mod:`egrc_lite.train.rewards` applies them to
TRL's batches.

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
stage come from :func:`egrc_lite.train.rewards.build_reward_funcs`; the EOS ids and the template from
the trainer (:func:`egrc_lite.train.rewards.bind_trainer`).

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
from typing import Any


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
