"""Answer strings: sanitise, canonicalise, read numbers, and spot inputs too risky to parse.

Pure, linear-time string helpers used by :mod:`egrc_lite.grading`. Nothing here imports sympy or
math-verify, and nothing here ever calls ``eval``/``exec``/``sympify``: numbers are read by regular
expressions and :class:`fractions.Fraction`, and minerva's code-style golds (``np.arcsin(10/13)``,
``-1./3``) by a small recursive-descent reader over a whitelist of functions.

The canonical form ``canonical(s)`` removes decoration only (spacing macros, ``\\left``/``\\right``,
``$``, ``\\dfrac``→``\\frac``, degree signs, trailing ``\\text{...}`` units, thousands separators
of a lone number, ``\\text{X}``→``X``), so ``canonical(a) == canonical(b)`` implies that ``a`` and
``b`` denote the same answer.

>>> canonical(r"10,\\!080")
'10080'
>>> canonical(r"\\left( 3, \\dfrac{\\pi}{2} \\right)")
'(3,\\\\frac{\\\\pi}{2})'
>>> parse_number(r"3.83 \\times 10^{35}").value == 383 * 10**33
True
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import NamedTuple

MAX_ANSWER_CHARS = 1000  # longest gold in the seven benchmarks: 260 characters
MAX_DEPTH = 20  # brace/bracket nesting; real answers stay under 8
MAX_EXP_EXPONENT = 400  # |E| in 1.5e{E}: larger exponents are left unread
MAX_POWER_BUDGET = 10**6  # product of numeric exponents x longest digit run (result digits)
MAX_FACTORIAL = 1000

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def sanitize(text: object) -> str | None:
    """Return ``text`` as a clean ``str`` (or None when it is not text).

    Bytes are decoded as UTF-8 with replacement, lone surrogates become ``?`` and control
    characters (NUL included) are dropped, so the result is always encodable and loggable.

    >>> sanitize(b"4\\xff2"), sanitize("4\\x002"), sanitize("\\ud8002"), sanitize(None)
    ('4\ufffd2', '42', '?2', None)
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(text)
    elif not isinstance(text, str):
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", text)


def short(text: object, limit: int = 60) -> str:
    """A log-safe prefix of ``text``: ASCII only, at most ``limit`` characters plus the length.

    >>> short("x" * 1000, 5)
    "'xxxxx'...(1000 chars)"
    """
    s = text if isinstance(text, str) else repr(type(text))
    head = ascii(s[:limit])
    return head if len(s) <= limit else f"{head}...({len(s)} chars)"


def nesting_depth(s: str) -> int:
    """Deepest nesting of ``{ ( [`` in ``s`` (unbalanced closers are ignored).

    >>> nesting_depth("{a(b[c])}")
    3
    """
    depth = best = 0
    for ch in s:
        if ch in "{([":
            depth += 1
            best = max(best, depth)
        elif ch in "})]" and depth:
            depth -= 1
    return best


def brace_partner(s: str, start: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``start`` (escaped ``\\{``/``\\}`` skipped), or -1.

    >>> brace_partner(r"{a\\}{b}}c", 0)
    7
    """
    depth = 0
    i, n = start, len(s)
    while i < n:
        ch = s[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def split_top_level(s: str, sep: str = ",") -> list[str]:
    """Split ``s`` at ``sep`` characters that are outside every bracket pair.

    >>> split_top_level("(1,2),\\\\{3,4\\\\},5")
    ['(1,2)', '\\\\{3,4\\\\}', '5']
    """
    parts, depth, last = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(s[last:i])
            last = i + 1
    parts.append(s[last:])
    return parts


# ---------------------------------------------------------------------------------------------
# canonical form
# ---------------------------------------------------------------------------------------------
_UNICODE = {"\u2212": "-", "\u00d7": "\\times ", "\u00b7": "\\cdot ", "\u03c0": "\\pi ",
            "\u221e": "\\infty ", "\u00b0": "^\\circ", "\u2264": "\\le ", "\u2265": "\\ge "}
_SUBS = [
    (re.compile(r"\$\s*,\s*\$"), ","),  # olympiadbench multi-answers: 69$,$84
    (re.compile(r"\\[$%]"), lambda m: m.group(0)[1]),
    (re.compile(r"\$"), ""),
    (re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])\.?"), ""),
    (re.compile(r"\\(?:displaystyle|quad|qquad|hfill)(?![A-Za-z])|\\[!,;:> ]|~"), " "),
    (re.compile(r"\\[dt]frac(?![A-Za-z])"), r"\\frac"),
    (re.compile(r"\\[dt]binom(?![A-Za-z])"), r"\\binom"),
    (re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\^\s*\{?\\degree\}?|\\degree"), ""),
]
_TRAILING_UNIT = re.compile(
    r"\s*\\(?:text|mbox|textrm|mathrm)\s*\{\s*[A-Za-z][A-Za-z .\-/]*\}(?:\s*\^\s*\{?\d\}?)?\s*$")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_IN_PREFIX = re.compile(r"^[A-Za-z]\s*\\in(?![A-Za-z])")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\})")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\d|[A-Za-z])")
_SINGLE_BRACE = re.compile(r"([\^_])\{(\w)\}")
_SPACE_DIGITS = re.compile(r"(?<=\d)\s+(?=\d)")
_SPACES = re.compile(r"\s+")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z]{2,}")


def canonical(s: str) -> str:
    """Decoration-free form of an answer string, for exact comparison (see module docstring).

    >>> [canonical(x) for x in [r"\\text{Evelyn}", r"90^\\circ", r"5.4 \\text{ cents}", r"\\$18.90",
    ...                         r"\\frac43", r"2 \\pi r"]]
    ['Evelyn', '90', '5.4', '18.90', '\\\\frac{4}{3}', '2\\\\pi r']
    """
    for bad, good in _UNICODE.items():
        if bad in s:
            s = s.replace(bad, good)
    for pattern, repl in _SUBS:
        s = pattern.sub(repl, s)
    s = s.strip()
    prev = None
    while prev != s:  # "864 \mbox{ inches}^2", "\frac{270}7\text{ degrees}"
        prev = s
        m = _TRAILING_UNIT.search(s)
        if m and m.start() > 0 and s[: m.start()].strip():
            s = s[: m.start()].rstrip()
    s = _TEXT_WRAP.sub(lambda m: m.group(1), s)
    s = _IN_PREFIX.sub("", s).strip()
    s = _FRAC_SHORT.sub(lambda m: r"\frac{%s}{%s}" % (m.group(1).strip("{}"), m.group(2).strip("{}")), s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = _SPACE_DIGITS.sub(" ", s)  # keep "3 5" distinct from "35"
    s = re.sub(r"(?<=\d) (?=\d{3}(?!\d))", "", s)  # "10 080" -> "10080"
    s = _SPACES.sub(_space, s)
    s = _SINGLE_BRACE.sub(r"\1\2", s)
    s = s.rstrip(".").lstrip("+")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s


def _space(m: re.Match) -> str:
    """Whitespace survives (as one space) only between digits and after a command word before a
    letter, where removing it would change the reading ("3 5", "\\pi r")."""
    s, a, b = m.string, m.start(), m.end()
    if a == 0 or b >= len(s):
        return ""
    if s[a - 1].isdigit() and s[b].isdigit():
        return " "
    if s[a - 1].isalpha() and s[b].isalpha():
        j = a - 1
        while j > 0 and s[j - 1].isalpha():
            j -= 1
        return " " if j > 0 and s[j - 1] == "\\" else ""
    return ""


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


# ---------------------------------------------------------------------------------------------
# guards in front of sympy
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# the pure-Python verdict
# ---------------------------------------------------------------------------------------------
_LHS = re.compile(r"[A-Za-z](?:_\{?[\w\\]+\}?)?(?:\([a-z]\))?")
_CHOICE = re.compile(r"\(([A-E])\)")
_AND_OR = re.compile(r",?(?:\band\b|\bor\b)")


def gold_number(gold: str) -> Number | None:
    """The gold as a number (code-style golds included), or None.

    >>> gold_number("np.arcsin(10/13)").exact, gold_number(r"\\frac{14}{3}").value
    (False, Fraction(14, 3))
    """
    if looks_like_code(gold):
        return eval_code_number(gold)
    return parse_number(canonical(gold))


def quick_verdict(pred: str, gold: str) -> bool | None:
    """True/False when plain string and number rules decide, None when sympy must decide.

    Decides: canonical forms equal (decoration removed, percent optional); ``x=3`` vs ``3``;
    choice letters ``(C)``; numbers by :func:`numbers_equal`; tuples/intervals with the same
    brackets element-wise in order; comma lists (and ``\\{...\\}`` sets) as multisets; and
    False when :func:`refute` finds the two expressions numerically different (inputs without
    decimal literals only: decimals are compared with a tolerance by the later layers).

    >>> quick_verdict(r"x = \\dfrac{3}{2}", "1.5"), quick_verdict("(2,1)", "(1,2)")
    (True, False)
    >>> quick_verdict(r"\\sqrt{2}", "1.414"), quick_verdict(r"2(\\frac{K-1}{L})", r"\\frac{K-1}{L}")
    (None, False)
    """
    g = canonical(gold)
    if looks_like_code(gold):
        p = canonical(pred)
        pn, gn = parse_number(p), eval_code_number(gold)
        if p == g:
            return True
        return numbers_equal(pn, gn) if pn is not None and gn is not None else None
    return _quick(canonical(pred), g, 0)


_DECIMAL = re.compile(r"\d\.|\.\d")
_E_NOTE = re.compile(r"\d[eE][+-]?\d")  # 3.83e35: math-verify gets 3.83\times10^{35}, latex2sympy 3.83*e*35


def _quick(p: str, g: str, depth: int) -> bool | None:
    if not p:
        return False
    if p == g or (p.rstrip("%") == g.rstrip("%") and p.rstrip("%")):
        return True
    m = _CHOICE.fullmatch(g)
    if m:
        letter = _CHOICE.fullmatch(p)
        letter = letter.group(1) if letter else (p if re.fullmatch(r"[A-E]", p) else None)
        if letter:
            return letter == m.group(1)
    if _WORD.fullmatch(p) and _WORD.fullmatch(g) and len(g) >= 3:
        return True if p.lower() == g.lower() else None  # "\\text{East}" vs "east"
    p, g = _drop_assignment(p, g), _drop_assignment(g, p)
    if p == g:
        return True
    if p.count("=") == 1 and g.count("=") == 1:  # same name on the left: compare right sides
        (pl, pr), (gl, gr) = p.split("="), g.split("=")
        if pl == gl and _LHS.fullmatch(gl) and pr and gr:
            return _quick(pr, gr, depth + 1)
    pn, gn = parse_number(p), parse_number(g)
    if pn is not None and gn is not None:
        return numbers_equal(pn, gn)
    verdict = _quick_sequence(p, g, depth) if depth < 3 else None
    if verdict is None and not (_E_NOTE.search(p) or _E_NOTE.search(g)):
        loose = bool(_DECIMAL.search(p) or _DECIMAL.search(g))
        if refute(p, g, rel=1e-3 if loose else 1e-6, absolute=1e-5 if loose else 0.0):
            return False
    return verdict


def _drop_assignment(s: str, other: str) -> str:
    """``x=3`` -> ``3`` when ``other`` has no ``=`` and the left side is a plain name."""
    if "=" in other or s.count("=") != 1:
        return s
    lhs, rhs = s.split("=")
    return rhs if rhs and _LHS.fullmatch(lhs) else s


def _bracketed(s: str) -> tuple[str, list[str]] | None:
    """``("()", items)`` for ``(a,b)`` / ``[a,b)`` ... spanning all of ``s`` with >= 2 items."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    depth = 0
    for i, ch in enumerate(s):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and i < len(s) - 1:
            return None
    items = split_top_level(s[1:-1])
    return (s[0] + s[-1], items) if len(items) >= 2 else None


def _unset(s: str) -> str:
    if s.startswith("\\{") and s.endswith("\\}") and s.count("\\{") == 1 and s.count("\\}") == 1:
        return s[2:-2]
    return s


def _quick_sequence(p: str, g: str, depth: int) -> bool | None:
    pt, gt = _bracketed(p), _bracketed(g)
    if pt and gt:
        if pt[0] != gt[0] or len(pt[1]) != len(gt[1]):
            return None
        verdicts = [_quick(a, b, depth + 1) for a, b in zip(pt[1], gt[1], strict=True)]
        if all(v is True for v in verdicts):
            return True
        return False if any(v is False for v in verdicts) else None
    p_items = [x for x in split_top_level(_AND_OR.sub(",", _unset(p))) if x]
    g_items = [x for x in split_top_level(_AND_OR.sub(",", _unset(g))) if x]
    if (len(p_items) < 2 and len(g_items) < 2) or pt or gt:
        return None
    numeric = all(parse_number(x) is not None for x in p_items + g_items)
    if len(p_items) != len(g_items):
        return False if numeric else None
    unused = list(g_items)
    for item in p_items:
        hit = next((k for k, cand in enumerate(unused) if _quick(item, cand, depth + 1) is True), None)
        if hit is None:
            return False if numeric else None
        unused.pop(hit)
    return True


# ---------------------------------------------------------------------------------------------
# strings handed to math-verify
# ---------------------------------------------------------------------------------------------
_E_NOTATION = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([+-]?\d{1,3})(?![\w.])")
_MV_SUBS = [(re.compile(r"\$\s*,\s*\$"), ","), (re.compile(r"\\\$"), ""), (re.compile(r"\$"), " "),
            (re.compile(r"\\!"), "")]


def mv_latex(s: str) -> str:
    """The string math-verify gets: ``$`` removed, e-notation as ``\\times 10^{}``, code golds as numbers.

    >>> mv_latex("3.83e35"), mv_latex("-1./3"), mv_latex("69$,$84")
    ('3.83\\\\times 10^{35}', '\\\\frac{-1}{3}', '69,84')
    """
    if looks_like_code(s):
        n = eval_code_number(s)
        if n is not None:
            v = n.value
            if n.exact:
                return str(v.numerator) if v.denominator == 1 else f"\\frac{{{v.numerator}}}{{{v.denominator}}}"
            return repr(float(v))
    for pattern, repl in _MV_SUBS:
        s = pattern.sub(repl, s)
    return _E_NOTATION.sub(r"\1\\times 10^{\2}", s).strip()


# ---------------------------------------------------------------------------------------------
# numeric refutation: two expressions that differ at a point are not equal
# ---------------------------------------------------------------------------------------------
_TEX_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*|\.\d+)|\\([A-Za-z]+)|([A-Za-z])|([-+*/^_(){}\[\]]))")
_TEX_DROP = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg|displaystyle)(?![A-Za-z])|\\[,;:! ]")
_TEX_FUNCS = {"sin": "sin", "cos": "cos", "tan": "tan", "sec": "sec", "csc": "csc", "cot": "cot",
              "arcsin": "asin", "arccos": "acos", "arctan": "atan", "sinh": "sinh", "cosh": "cosh",
              "tanh": "tanh", "ln": "log", "log": "log10", "exp": "exp"}
_GREEK = set("alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta kappa lambda mu nu xi "
             "rho sigma tau phi varphi chi psi omega".split())
_TEX_OPS = {"cdot": "*", "times": "*", "div": "/", "dfrac": "frac", "tfrac": "frac"}


def refute(pred: str, gold: str, rel: float = 1e-6, absolute: float = 0.0) -> bool:
    """True when two LaTeX expressions provably differ: they evaluate to different values.

    Both are read with latex2sympy's conventions (implicit products bind tighter than ``/``,
    ``e`` is Euler's number, ``\\log`` is base 10) over a small grammar (numbers, letters, greek
    letters with subscripts, ``+ - * / ^``, ``\\frac``, ``\\sqrt``, ``\\pi`` and parenthesised
    functions) and evaluated at two fixed points. Anything outside it (``=``, ``,``, ``i``, ``!``,
    sets, unbracketed function arguments) gives False ("cannot tell"). Never proves equality.
    "Different" means ``|x-y| > max(rel * max(|x|, |y|), absolute)`` at some point; with decimals
    the caller passes a tolerance wider than math-verify's rounding to 6 decimals.

    >>> refute(r"2(\\frac{K-1}{L})", r"\\frac{K-1}{L}"), refute(r"\\frac{1}{2}n(n+1)", r"\\frac{n^2+n}{2}")
    (True, False)
    """
    a, b = _tex_tree(pred), _tex_tree(gold)
    if a is None or b is None:
        return False
    for point in (0, 1):
        try:
            x, y = _tex_eval(a, point), _tex_eval(b, point)
        except (ArithmeticError, ValueError, TypeError, RecursionError):
            return False
        if not (_finite(x) and _finite(y)):
            return False
        if abs(x - y) > max(rel * max(abs(x), abs(y), 1e-6), absolute):
            return True
    return False


def _finite(z: complex) -> bool:
    return math.isfinite(z.real) and math.isfinite(z.imag)


def _tex_tree(s: str):
    if len(s) > MAX_ANSWER_CHARS or nesting_depth(s) > MAX_DEPTH:
        return None
    s = _TEX_DROP.sub(" ", s)
    tokens, pos = [], 0
    while pos < len(s):
        m = _TEX_TOKEN.match(s, pos)
        if not m:
            if s[pos:].strip():
                return None
            break
        num, cmd, letter, op = m.groups()
        cmd = _TEX_OPS.get(cmd, cmd)
        tokens.append(("num", num) if num else ("op", cmd) if cmd in ("*", "/") else
                      ("cmd", cmd) if cmd else ("sym", letter) if letter else ("op", op))
        pos = m.end()
    reader = _TexReader(tokens)
    try:
        tree = reader.additive()
    except (ValueError, IndexError):
        return None
    return tree if reader.i == len(tokens) else None


class _TexReader:
    """Recursive descent: additive > mp (* /) > unary (sign, implicit product) > postfix (^)."""

    def __init__(self, tokens):
        self.t, self.i = tokens, 0

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, kind, value=None):
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise ValueError(f"expected {value or kind}")
        self.i += 1
        return tok[1]

    def additive(self):
        node = self.mp()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take("op")
            node = (op, node, self.mp())
        return node

    def mp(self):
        node = self.unary()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take("op")
            node = (op, node, self.unary())
        return node

    def unary(self):
        if self.peek() in (("op", "+"), ("op", "-")):
            op = self.take("op")
            inner = self.unary()
            return inner if op == "+" else ("neg", inner)
        node = self.postfix()
        while self._starts_atom():
            if self.peek()[0] == "num":
                raise ValueError("number after a factor")  # latex2sympy reads "2 3" as 5
            node = ("*", node, self.postfix())
        return node

    def _starts_atom(self):
        kind, value = self.peek()
        return kind in ("num", "sym") or (kind == "op" and value in "([{") or (
            kind == "cmd" and (value in _TEX_FUNCS or value in _GREEK or value in ("frac", "sqrt", "pi")))

    def postfix(self):
        node = self.atom()
        if self.peek() == ("op", "^"):
            self.take("op")
            kind, value = self.peek()
            if kind == "num" or kind == "sym":
                self.i += 1
                exponent = ("num", value) if kind == "num" else self._symbol(value)
            else:
                exponent = self.group()
            node = ("^", node, exponent)
        return node

    def group(self):
        kind, value = self.peek()
        if kind == "op" and value in "({[":
            self.i += 1
            inner = self.additive()
            self.take("op", {"(": ")", "{": "}", "[": "]"}[value])
            return inner
        if kind in ("num", "sym") and (kind == "sym" or len(value) == 1):
            self.i += 1
            return ("num", value) if kind == "num" else self._symbol(value)
        raise ValueError("expected a group")

    def _symbol(self, name):
        if name in "EiI":
            raise ValueError("ambiguous letter")
        if self.peek() == ("op", "_"):
            self.i += 1
            kind, value = self.peek()
            if kind == "op" and value == "{":
                self.i += 1
                parts = []
                while self.peek()[0] in ("num", "sym"):
                    parts.append(self.t[self.i][1])
                    self.i += 1
                self.take("op", "}")
                value = "".join(parts)
            else:
                self.i += 1
            if not value or kind not in ("num", "sym", "op"):
                raise ValueError("bad subscript")
            return ("sym", f"{name}_{value}")
        return ("const", math.e) if name == "e" else ("sym", name)

    def atom(self):
        kind, value = self.peek()
        if kind == "num":
            self.i += 1
            return ("num", value)
        if kind == "sym":
            self.i += 1
            if value in "fgh" and self.peek() == ("op", "("):
                raise ValueError("function application")
            return self._symbol(value)
        if kind == "op" and value in "({[":
            return self.group()
        if kind == "cmd":
            self.i += 1
            if value == "pi":
                return ("const", math.pi)
            if value in _GREEK:
                return self._symbol(value)
            if value == "frac":
                return ("/", self.group(), self.group())
            if value == "sqrt":
                index = None
                if self.peek() == ("op", "["):
                    self.i += 1
                    index = self.additive()
                    self.take("op", "]")
                return ("root", self.group(), index)
            if value in _TEX_FUNCS and self.peek()[0] == "op" and self.peek()[1] in "({":
                return ("fn", _TEX_FUNCS[value], self.group())
        raise ValueError("unsupported")


def _point_value(name: str, point: int) -> float:
    import zlib

    return 0.31 + (zlib.crc32(name.encode()) * (point + 3) % 997) / 700


def _tex_eval(node, point: int) -> complex:
    import cmath

    kind = node[0]
    if kind == "num":
        return complex(float(node[1]))
    if kind == "const":
        return complex(node[1])
    if kind == "sym":
        return complex(_point_value(node[1], point))
    if kind == "neg":
        return -_tex_eval(node[1], point)
    if kind == "fn":
        z = _tex_eval(node[2], point)
        fn = node[1]
        if fn in ("sec", "csc", "cot"):
            return 1 / getattr(cmath, {"sec": "cos", "csc": "sin", "cot": "tan"}[fn])(z)
        return getattr(cmath, fn)(z)
    if kind == "root":
        z = _tex_eval(node[1], point)
        return cmath.sqrt(z) if node[2] is None else z ** (1 / _tex_eval(node[2], point))
    x, y = _tex_eval(node[1], point), _tex_eval(node[2], point)
    if kind == "+":
        return x + y
    if kind == "-":
        return x - y
    if kind == "*":
        return x * y
    if kind == "/":
        return x / y
    if abs(y) > 1e4 or abs(x) > 1e300:  # "^"
        raise OverflowError("power too large")
    return x ** y
