"""Answer extraction: find the model's final answer in a response (layer 1 of the grader).

Two rules, named in :data:`ANSWER_RULES`: ``"boxed"`` takes the last ``\\boxed{...}`` (or
``\\fbox{...}``), ``"last_number"`` the last number. Both look only after the last ``</think>``
(the whole text when there is none), so an answer that only appears while thinking does not
count. Linear time, hostile input safe (anything that is not text gives None).

>>> extract("<think>maybe \\\\boxed{1}</think> It is \\\\boxed{2}, i.e. 2.0", "boxed")
'2'
>>> extract("<think>maybe \\\\boxed{1}</think> It is \\\\boxed{2}, i.e. 2.0", "last_number")
'2.0'
"""

from __future__ import annotations

import re

from egrc_lite.grading.text import brace_partner, sanitize

ANSWER_RULES = ("boxed", "last_number")
_THINK_CLOSE = "</think>"
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.S)
_TOKEN = re.compile(r"[^\s$]+")
_NUMBER = re.compile(r"(?<![\d.])(-?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?|(?<![\d.])(-?)\.(\d+)")


def _answer_region(response: object) -> str | None:
    text = sanitize(response)
    if text is None:
        return None
    cut = text.rfind(_THINK_CLOSE)
    return text if cut < 0 else text[cut + len(_THINK_CLOSE):]


def extract_answer(response: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, ``\\boxed 5``) after ``</think>``.

    Without ``</think>`` the whole text is searched; with it, only the text after the last one
    (a box that only appears inside the thinking does not count). Braces are balanced (``\\{``
    and ``\\}`` are literal), boxes nested in a box belong to it, unclosed and empty boxes are
    skipped. Linear time. None when there is no answer.

    >>> extract_answer(r"<think>\\boxed{1}</think> so \\boxed{\\frac{1}{2}} and \\fbox{\\{3,4\\}}")
    '\\\\{3,4\\\\}'
    >>> extract_answer("<think>\\\\boxed{1}</think> no box") is None
    True
    """
    text = _answer_region(response)
    if not text:
        return None
    boxes = list(_BOX.finditer(text))
    if not boxes:
        return None
    partners, stack = {}, []
    for tok in _BRACE_TOKEN.finditer(text, boxes[0].start()):
        if tok.group(0) == "{":
            stack.append(tok.start())
        elif tok.group(0) == "}" and stack:
            partners[stack.pop()] = tok.start()
    answer, end = None, -1
    for box in boxes:
        if box.start() < end:
            continue  # inside the previous accepted box
        i = box.end()
        while i < len(text) and text[i] in " \t\n":
            i += 1
        if i < len(text) and text[i] == "{":
            close = partners.get(i, -1)
            if close < 0:
                continue
            content, end = text[i + 1:close].strip(), close
        elif i > box.end() and (tok := _TOKEN.match(text, i)):
            content, end = tok.group(0).rstrip(".,;:"), tok.end()
        else:
            continue
        if content:
            answer = content
    while answer and (m := _BOX.match(answer)) and answer.endswith("}"):
        j = m.end()
        if answer[j:j + 1] != "{" or brace_partner(answer, j) != len(answer) - 1:
            break
        answer = answer[j + 1:-1].strip()
    return answer or None


def extract_last_number(response: str) -> str | None:
    """The last number after ``</think>`` (whole text without it), commas removed, or None.

    Integers, decimals, negatives (a ``-`` right after a letter/digit/bracket is a minus, not a
    sign) and thousands separators (``1,234``). A lenient answer rule for weak small models.

    >>> extract_last_number("<think>try 7</think> She pays $1,234.50, i.e. 2-5 = -3 dollars.")
    '-3'
    >>> extract_last_number("<think>12</think> no digits") is None
    True
    """
    text = _answer_region(response)
    if not text:
        return None
    last = next(reversed(list(_NUMBER.finditer(text))), None)
    if last is None:
        return None
    sign, whole, frac = (last.group(1), last.group(2), last.group(3) or "") if last.group(2) \
        else (last.group(4), "0", "." + last.group(5))
    start = last.start()
    if sign and start > 0 and (text[start - 1].isalnum() or text[start - 1] in ")]}"):
        sign = ""
    return f"{sign}{whole.replace(',', '')}{frac}"


def check_answer_rule(answer_rule: str) -> None:
    """Raise ValueError (listing the valid rules) unless ``answer_rule`` is one of :data:`ANSWER_RULES`."""
    if answer_rule not in ANSWER_RULES:
        raise ValueError(f"unknown answer_rule {answer_rule!r}; valid: {', '.join(ANSWER_RULES)}")


def extract(response: object, answer_rule: str) -> str | None:
    """The answer in ``response`` by a (checked) ``answer_rule``: :func:`extract_answer` for
    ``"boxed"``, :func:`extract_last_number` otherwise."""
    return extract_answer(response) if answer_rule == "boxed" else extract_last_number(response)
