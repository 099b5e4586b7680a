"""Hostile-input guards: the caps and the risk check that keep giant inputs away from sympy.

Model outputs are hostile. A SIGALRM deadline (:mod:`egrc_lite.grading.mathverify`) bounds
Python-level work only; sympy evaluating ``10^{10^{10}}`` or ``(10^{10})!`` spends its time in C
(big-integer arithmetic) where no signal reaches it. So :func:`risk` reads the string, without
parsing it into sympy, and refuses exponent towers, huge factorials and combinatorial functions
of large literals before math-verify sees them. The caps below are far above any real answer:
the longest gold in the seven benchmarks has 260 characters.

>>> risk(r"x^2+2x+1") is None, risk(r"2^{2^{2^{2^{2^{2}}}}}"), risk("9" * 2000)
(True, 'exponent tower', 'too long')
"""

from __future__ import annotations

import math
import re

from egrc_lite.grading.text import brace_partner, nesting_depth

MAX_ANSWER_CHARS = 1000  # longest gold in the seven benchmarks: 260 characters
MAX_DEPTH = 20  # brace/bracket nesting; real answers stay under 8
MAX_POWER_BUDGET = 10**6  # product of numeric exponents x longest digit run (result digits)
MAX_FACTORIAL = 1000

_DIGITS = re.compile(r"\d+")
_POW = re.compile(r"\^|\*\*")
_SIMPLE_POW = re.compile(r"\{?\s*([+-]?\d+(?:\.\d+)?)\s*\}?(?:\s*(?:\^|\*\*)\s*(.*))?", re.S)
_BANG = re.compile(r"!+")
_CHAIN = re.compile(r"(?:\^|\*\*)\s*(?:\d+|\{[^{}]*\})\s*(?:\^|\*\*)")
_BIG_FUNCS = re.compile(r"\\(?:binom|choose|Gamma|dbinom|tbinom)|\\operatorname\{(?:fib|lcm)")


def risk(s: str) -> str | None:
    """Why ``s`` is unsafe to hand to sympy (a short reason), or None when it looks safe.

    Rejects: more than ``MAX_ANSWER_CHARS`` characters, nesting deeper than ``MAX_DEPTH``,
    exponent towers whose numeric value would need more than ``MAX_POWER_BUDGET`` digits
    (``10^{10^{10}}``, ``2^{2^{2^{2^{2^{2}}}}}``, ``(9999^{9999})^{9999}``), factorials of
    numbers above ``MAX_FACTORIAL`` and binomials/Gamma of large literals.

    >>> risk(r"\\frac{100!}{2^{50}}") is None, risk(r"10^{10^{10}}"), risk("(10^{5})!")
    (True, 'exponent tower', 'huge factorial')
    """
    if len(s) > MAX_ANSWER_CHARS:
        return "too long"
    if nesting_depth(s) > MAX_DEPTH:
        return "too deep"
    runs = [len(r) for r in _DIGITS.findall(s)]
    longest = max(runs, default=1)
    if _POW.search(s):
        if _CHAIN.search(s):
            return "exponent tower"
        budget = float(longest)
        for m in _POW.finditer(s):
            value = _exponent_value(s, m.end())
            if value is None:
                continue
            if value > MAX_POWER_BUDGET:
                return "exponent tower"
            if _numeric_base(s, m.start()):
                budget *= max(1.0, value)
                if budget > MAX_POWER_BUDGET:
                    return "exponent tower"
    if "!" in s:
        for m in _BANG.finditer(s.replace("\\!", " ")):
            if _factorial_risky(m.string, m.start(), len(m.group(0))):
                return "huge factorial"
    if _BIG_FUNCS.search(s) and (longest >= 5 or _POW.search(s)):
        return "huge combinatorial function"
    return None


def _numeric_base(s: str, i: int) -> bool:
    j = i - 1
    while j >= 0 and s[j] == " ":
        j -= 1
    return j >= 0 and (s[j].isdigit() or s[j] in ")}]")


def _exponent_value(s: str, i: int) -> float | None:
    """Magnitude of the exponent starting at s[i] when it is numeric (inf when huge), else None."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] in "{(":
        if s[i] == "{":
            end = brace_partner(s, i)
        else:
            end = _paren_partner(s, i)
        if end < 0:
            return None
        return _tower_value(s[i + 1:end], 0)
    m = _DIGITS.match(s, i)
    return float(m.group(0)) if m and len(m.group(0)) < 300 else (math.inf if m else None)


def _paren_partner(s: str, i: int) -> int:
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "(":
            depth += 1
        elif s[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _tower_value(content: str, depth: int) -> float | None:
    """Value of ``a^{b^{...}}`` made only of numeric literals (capped at inf), else None."""
    if depth > 10:
        return math.inf
    m = _SIMPLE_POW.fullmatch(content.strip())
    if not m:
        return None
    base = abs(float(m.group(1))) if len(m.group(1)) < 300 else math.inf
    if m.group(2) is None:
        return base
    rest = m.group(2).strip()
    if rest.startswith("{") and brace_partner(rest, 0) == len(rest) - 1:
        rest = rest[1:-1]
    exponent = _tower_value(rest, depth + 1)
    if exponent is None:
        return None
    if base <= 1:
        return base
    log10 = exponent * math.log10(base) if exponent != math.inf else math.inf
    return math.inf if log10 > 300 else base ** exponent


def _factorial_risky(s: str, start: int, bangs: int) -> bool:
    j = start - 1
    while j >= 0 and s[j] == " ":
        j -= 1
    if j < 0:
        return False
    if s[j].isdigit():
        k = j
        while k >= 0 and s[k].isdigit():
            k -= 1
        digits = s[k + 1:j + 1]
        return bangs > 2 or len(digits) > 4 or int(digits) > (MAX_FACTORIAL if bangs == 1 else 7)
    if s[j] in ")}":
        opener = "(" if s[j] == ")" else "{"
        depth, k = 0, j
        while k >= 0:
            depth += s[k] == s[j]
            depth -= s[k] == opener
            if depth == 0:
                break
            k -= 1
        group = s[k + 1:j]
        return (bool(_POW.search(group)) or "!" in group or bangs > 1
                or any(len(r) > 3 for r in _DIGITS.findall(group)))
    return bangs > 2
