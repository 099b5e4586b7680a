"""Answer strings: sanitise them, cut them for logs, find their brackets, canonicalise their notation.

Pure, linear-time string helpers at the bottom of the grader (:mod:`egrc_lite.grading`). Numbers
are read by :mod:`egrc_lite.grading.numbers`; the verdict built on these is :mod:`egrc_lite.grading.quick`.
Nothing here imports sympy or math-verify, and nothing here ever calls ``eval``/``exec``/``sympify``.

The canonical form ``canonical(s)`` removes decoration only (spacing macros, ``\\left``/``\\right``,
``$``, ``\\dfrac``→``\\frac``, degree signs, trailing ``\\text{...}`` units, thousands separators
of a lone number, ``\\text{X}``→``X``), so ``canonical(a) == canonical(b)`` implies that ``a`` and
``b`` denote the same answer.

>>> canonical(r"10,\\!080")
'10080'
>>> canonical(r"\\left( 3, \\dfrac{\\pi}{2} \\right)")
'(3,\\\\frac{\\\\pi}{2})'
"""

from __future__ import annotations

import re

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
