"""Numeric refutation: two LaTeX expressions that evaluate differently at a point are not equal.

A cheap "no" before sympy: :func:`refute` reads both expressions over a small LaTeX grammar
(numbers, letters, greek letters with subscripts, ``+ - * / ^``, ``\\frac``, ``\\sqrt``, ``\\pi``,
parenthesised functions) into a tree, with the conventions latex2sympy (under math-verify) reads
them by, and evaluates the trees with :mod:`cmath` at two fixed points (each variable gets a
value from a hash of its name). It never calls ``eval`` and never proves equality: anything
outside the grammar answers "cannot tell" (False).

>>> refute(r"\\frac{x}{2}", r"\\frac{x}{3}"), refute(r"\\frac{x}{2}", r"\\frac{1}{2}x"), refute("x=1", "1")
(True, False, False)
"""

from __future__ import annotations

import math
import re

from egrc_lite.grading.guards import MAX_ANSWER_CHARS, MAX_DEPTH
from egrc_lite.grading.text import nesting_depth

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
