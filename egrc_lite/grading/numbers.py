"""Numbers in answers, read without ``eval``: plain, fractional, scientific and code-style.

A :class:`Number` keeps the exact value (a :class:`fractions.Fraction`), whether it was written
exactly (``1/3`` is, ``0.333`` is not) and a percent sign; :func:`numbers_equal` compares two of
them with a tolerance that depends on which side was approximate. LaTeX numbers are read by
regular expressions (:func:`parse_number`); minerva's code-style golds (``np.arcsin(10/13)``,
``-1./3``) by a small recursive-descent reader over a whitelist of functions
(:func:`eval_code_number`). Nothing here calls ``eval``/``exec``/``sympify`` or imports sympy.

>>> parse_number(r"3.83 \\times 10^{35}").value == 383 * 10**33
True
>>> numbers_equal(parse_number("0.5"), gold_number(r"\\frac{1}{2}"))
True
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import NamedTuple

from egrc_lite.grading.text import canonical


# ---------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------
class Number(NamedTuple):
    """A number read from an answer: exact value, whether it was written exactly, percent sign."""

    value: Fraction
    exact: bool
    percent: bool = False


_NUM = r"(?:\d+\.?\d*|\.\d+)"
_SNUM = rf"[+-]?{_NUM}"
_RE_PLAIN = re.compile(rf"({_NUM})(?:e([+-]?\d{{1,3}}))?")
_RE_SCI = re.compile(
    rf"(?:({_NUM})(?:\\times|\\cdot|\*))?10\^(?:\{{([+-]?\d{{1,3}})\}}|(\d))")
_RE_FRAC = re.compile(rf"\\frac\{{({_SNUM})\}}\{{({_SNUM})\}}")
_RE_SLASH = re.compile(rf"({_SNUM})/({_SNUM})")
_RE_MIXED = re.compile(r"(\d+)\\frac\{(\d+)\}\{(\d+)\}")
_UNIT_WORDS = re.compile(
    r"(?<=[\d}])(?:sq|square|cubic)?(?:units?|degrees?|deg|cm|mm|km|meters?|metres?|inch(?:es)?|feet"
    r"|foot|ft|yards?|miles?|mph|cents?|dollars?|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?"
    r"|weeks?|months?|years?|kg|grams?|pounds?|lbs?|liters?|litres?|ml|percent|people|ways)(?:\^\d)?$")


def _lit(text: str) -> tuple[Fraction, bool]:
    if len(text) > 200:
        raise ValueError("literal too long")
    text = text.rstrip(".") or "0"
    return Fraction(text), not any(c in text for c in ".eE")


def parse_number(s: str) -> Number | None:
    """Read a plain number from a canonical answer, or None.

    Integers, decimals, ``a/b``, ``\\frac{a}{b}``, mixed numbers ``1\\frac{4}{5}``, e-notation
    ``3.83e35`` and ``3.83\\times10^{35}`` / ``\\cdot``, a trailing ``%`` and trailing unit words
    (``5 cents``). ``exact`` is False when a decimal fraction or e-notation was used (``1.`` is exact).

    >>> parse_number("-1./3"), parse_number(r"1\\frac{4}{5}").value
    (Number(value=Fraction(-1, 3), exact=True, percent=False), Fraction(9, 5))
    """
    s = canonical(s) if (" " in s or "\\" in s or "$" in s) else s
    percent = s.endswith("%")
    s = s.rstrip("%")
    num = _parse_signed(s)
    if num is None:
        unitless = _UNIT_WORDS.sub("", s)
        if unitless != s:
            num = _parse_signed(unitless)
    if num is None:
        return None
    return Number(num[0], num[1], percent)


def _parse_signed(s: str) -> tuple[Fraction, bool] | None:
    sign = 1
    if s[:1] in "+-" and s:
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    try:
        num = _parse_unsigned(s)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None if num is None else (sign * num[0], num[1])


def _parse_unsigned(s: str) -> tuple[Fraction, bool] | None:
    m = _RE_PLAIN.fullmatch(s)
    if m:
        value, exact = _lit(m.group(1))
        if m.group(2) is not None:
            return value * Fraction(10) ** int(m.group(2)), False
        return value, exact
    m = _RE_SCI.fullmatch(s)
    if m:
        mant, exact = _lit(m.group(1)) if m.group(1) else (Fraction(1), True)
        return mant * Fraction(10) ** int(m.group(2) or m.group(3)), exact
    for rx in (_RE_FRAC, _RE_SLASH):
        m = rx.fullmatch(s)
        if m:
            (a, ea), (b, eb) = _lit(m.group(1)), _lit(m.group(2))
            return a / b, ea and eb
    m = _RE_MIXED.fullmatch(s)
    if m:
        whole, num, den = (int(g) for g in m.groups())
        if num < den:
            return whole + Fraction(num, den), True
    return None


def numbers_equal(pred: Number, gold: Number) -> bool:
    """Equality of two numbers as written.

    Both exact: exact equality. Gold approximate (decimal/e-notation): ``|p-g| <= 1e-4 |g|``.
    Gold exact, prediction approximate: ``|p-g| <= 1e-6 max(1, |g|)``. A percent sign on one
    side only also accepts the value divided by 100 (``8%`` = ``0.08``).

    >>> g = parse_number("3.83e35")
    >>> numbers_equal(parse_number(r"3.83\\cdot10^{35}"), g), numbers_equal(parse_number("3.9e35"), g)
    (True, False)
    """
    golds = [gold.value]
    preds = [pred.value]
    if gold.percent and not pred.percent:
        golds.append(gold.value / 100)
    if pred.percent and not gold.percent:
        preds.append(pred.value / 100)
    for g in golds:
        for p in preds:
            if pred.exact and gold.exact:
                if p == g:
                    return True
            elif not gold.exact:
                if abs(p - g) <= Fraction(1, 10**4) * abs(g) or p == g:
                    return True
            elif abs(p - g) <= Fraction(1, 10**6) * max(1, abs(g)):
                return True
    return False


# ---------------------------------------------------------------------------------------------
# minerva's code-style golds: np.arcsin(10/13), -1./3, \exp{...} is left to math-verify
# ---------------------------------------------------------------------------------------------
_CODE_FUNCS = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "arcsin": math.asin, "arccos": math.acos,
    "arctan": math.atan, "asin": math.asin, "acos": math.acos, "atan": math.atan, "exp": math.exp,
    "log": math.log, "ln": math.log, "log10": math.log10, "sqrt": math.sqrt,
}
_CODE_CONSTS = {"pi": math.pi, "e": math.e}
_CODE_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)"  # number
                         r"|((?:np|math|numpy)\.[a-z0-9]+|[a-z]+[0-9]*)"  # name
                         r"|(\*\*|[-+*/^()]))")  # operator
_CODE_HINT = re.compile(r"(?:np|math|numpy)\.[a-z]|\d\./|\*\*")


def looks_like_code(s: str) -> bool:
    """True for minerva-style golds written as Python (``np.arcsin(10/13)``, ``-1./3``)."""
    return bool(_CODE_HINT.search(s)) and "\\" not in s


def eval_code_number(s: str) -> Number | None:
    """Numeric value of a code-style expression, read without ``eval`` (None if unreadable).

    Grammar: ``+ - * / ** ^``, parentheses, numbers, ``pi``/``e`` and whitelisted functions
    (optionally prefixed ``np.``/``math.``). Rational arithmetic stays exact.

    >>> eval_code_number("-1./3").value, round(float(eval_code_number("np.arcsin(10/13)").value), 6)
    (Fraction(-1, 3), 0.877636)
    """
    if len(s) > 200:
        return None
    tokens, pos = [], 0
    s = s.strip()
    while pos < len(s):
        m = _CODE_TOKEN.match(s, pos)
        if not m or m.end() == pos:
            return None
        tokens.append(m.groups())
        pos = m.end()
    reader = _CodeReader(tokens)
    try:
        value, exact = reader.expr(0)
        if reader.i != len(tokens):
            return None
        if not exact:
            value = float(value)
            if not math.isfinite(value):
                return None
            value = Fraction(value)
        return Number(Fraction(value), exact)
    except (ValueError, ZeroDivisionError, OverflowError, IndexError, TypeError, RecursionError):
        return None


class _CodeReader:
    """Recursive descent over tokens (number, name, op); values are (Fraction|float, exact)."""

    def __init__(self, tokens):
        self.t, self.i = tokens, 0

    def _op(self, ops):
        if self.i < len(self.t) and self.t[self.i][2] in ops:
            self.i += 1
            return self.t[self.i - 1][2]
        return None

    def expr(self, depth):
        if depth > 30:
            raise ValueError("too deep")
        value = self.term(depth)
        while (op := self._op(("+", "-"))) is not None:
            rhs = self.term(depth)
            value = _combine(value, rhs, op)
        return value

    def term(self, depth):
        value = self.factor(depth)
        while (op := self._op(("*", "/"))) is not None:
            value = _combine(value, self.factor(depth), op)
        return value

    def factor(self, depth):
        if (op := self._op(("+", "-"))) is not None:
            v, exact = self.factor(depth + 1)
            return (-v if op == "-" else v), exact
        base = self.atom(depth)
        if self._op(("**", "^")) is not None:
            exponent = self.factor(depth + 1)
            return _combine(base, exponent, "**")
        return base

    def atom(self, depth):
        num, name, op = self.t[self.i]
        self.i += 1
        if num:
            return _lit(num)
        if op == "(":
            value = self.expr(depth + 1)
            if self._op((")",)) is None:
                raise ValueError("missing )")
            return value
        if name:
            name = name.split(".")[-1]
            if name in _CODE_CONSTS:
                return _CODE_CONSTS[name], False
            if name in _CODE_FUNCS and self._op(("(",)):
                arg = self.expr(depth + 1)
                if self._op((")",)) is None:
                    raise ValueError("missing )")
                return _CODE_FUNCS[name](float(arg[0])), False
        raise ValueError("unexpected token")


def _combine(a, b, op):
    (x, ex), (y, ey) = a, b
    exact = ex and ey
    if op == "+":
        return x + y, exact
    if op == "-":
        return x - y, exact
    if op == "*":
        return x * y, exact
    if op == "/":
        return (Fraction(x) / Fraction(y) if exact else float(x) / float(y)), exact
    if exact and Fraction(y).denominator == 1 and abs(y) <= 64:  # "**"
        return Fraction(x) ** int(y), True
    if abs(float(y)) > 1000:
        raise OverflowError("exponent too large")
    return float(x) ** float(y), False


def gold_number(gold: str) -> Number | None:
    """The gold as a number (code-style golds included), or None.

    >>> gold_number("np.arcsin(10/13)").exact, gold_number(r"\\frac{14}{3}").value
    (False, Fraction(14, 3))
    """
    if looks_like_code(gold):
        return eval_code_number(gold)
    return parse_number(canonical(gold))
