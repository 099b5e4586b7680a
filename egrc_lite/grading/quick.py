"""The pure-Python verdict: decide the common answer shapes without sympy, or defer.

Layer 2 of the grader (:mod:`egrc_lite.grading`): :func:`quick_verdict` returns True or False
when canonical strings, numbers, choice letters, assignments (``x=3``), tuples, intervals and
unordered lists decide, and None when math-verify must. A False also comes from
:func:`egrc_lite.grading.refute.refute` (the two expressions differ at a point).

>>> quick_verdict("84, 69", "69$,$84"), quick_verdict("1, 2", "1,-2"), quick_verdict("x^2+2x+1", "(x+1)^2")
(True, False, None)
"""

from __future__ import annotations

import re

from egrc_lite.grading.refute import refute
from egrc_lite.grading.text import canonical, split_top_level
from egrc_lite.grading.numbers import eval_code_number, looks_like_code, numbers_equal, parse_number

_LHS = re.compile(r"[A-Za-z](?:_\{?[\w\\]+\}?)?(?:\([a-z]\))?")
_CHOICE = re.compile(r"\(([A-E])\)")
_AND_OR = re.compile(r",?(?:\band\b|\bor\b)")
_WORD = re.compile(r"[A-Za-z]{2,}")


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
