"""The math-verify bridge: prepare strings for it, load it lazily, and bound each comparison.

Layer 3 of the grader (:mod:`egrc_lite.grading`): answers the pure-Python layers leave open are
handed to math-verify (latex2sympy + sympy). math-verify and sympy are imported on the first
comparison, not at import (:func:`load_math_verify`, ~2 s once, including a warm-up outside any
deadline), and their loggers are cut to a short prefix of each input. One comparison spends at
most ``MV_BUDGET_S`` seconds in sympy under a SIGALRM timer (:func:`compare_in_process`, main
thread only: see :func:`signals_usable`); a timeout counts as "not equal" and is not cached,
decided verdicts are (:data:`VERDICT_CACHE`). Work that no signal can interrupt is kept out
beforehand by :func:`egrc_lite.grading.guards.risk`; off the main thread the comparisons run in
:mod:`egrc_lite.grading.pool`.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections import OrderedDict

from egrc_lite.grading.text import short
from egrc_lite.grading.numbers import Number, eval_code_number, gold_number, looks_like_code, numbers_equal

logger = logging.getLogger("egrc_lite.grading")  # one logger for every layer of the grader

MV_BUDGET_S = 1.5  # sympy time for one comparison before it counts as "not equal"

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
# math-verify behind a deadline
# ---------------------------------------------------------------------------------------------
class _Deadline(BaseException):
    """Raised by our SIGALRM handler; a BaseException so that ``except Exception`` can't eat it."""


_MV_LOCK = threading.Lock()
_MV_STATE: dict[str, object] = {}
VERDICT_CACHE: OrderedDict[tuple[str, str], bool] = OrderedDict()
_VERDICT_CACHE_MAX = 4096


class _ShortLogs(logging.Filter):
    """math-verify logs whole inputs (on timeouts, parse errors): keep a short prefix only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "Timeout is disabled" in str(record.msg):
            return False
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001
            msg = str(record.msg)
        if len(msg) > 200 or record.exc_info:
            record.msg, record.args = short(msg, 150), None
            record.exc_info = record.exc_text = None
        return True


def load_math_verify():
    """Import math-verify once (lazily: it pulls in sympy, ~0.5 s) and tame its loggers."""
    if "verify" in _MV_STATE:
        return _MV_STATE
    with _MV_LOCK:
        if "parse" not in _MV_STATE:
            from math_verify import LatexExtractionConfig, parse, verify

            for name in ("math_verify", "math_verify.parser", "math_verify.grader", "math_verify.utils",
                         "latex2sympy2_extended", "latex2sympy2_extended.math_normalization"):
                logging.getLogger(name).addFilter(_ShortLogs())
            _MV_STATE.update(parse=parse, verify_fn=verify, config=[LatexExtractionConfig()],
                             gold_cache=OrderedDict())
            _warm_up(_WARM_UP, _MV_STATE)  # sympy loads lazily: ~1 s here, not inside a deadline
            _MV_STATE["verify"] = verify
    return _MV_STATE


_WARM_UP = [(r"\frac{x}{2}+\sqrt{2}", r"\frac{1}{2}x+\sqrt{2}"), (r"(x+1)^2", r"x^2+2x+1"), ("(1,2]", "[1,2]"),
            ("1,-2", "-2,1"), (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}1\\3\end{pmatrix}"),
            ("x=2", "y=2x"), ("y=2x+1", "2x-y+1=0"), (r"\sin(x)^2+\cos(x)^2", "1"),
            (r"(0,1)\cup(2,3)", r"(0,3)\setminus[1,2]"), (r"\sqrt{2}", "1.414")]


def _warm_up(pairs, mv=None) -> None:
    for pred, gold in pairs:
        try:
            _mv_compare(pred, gold, mv)
        except Exception:  # noqa: BLE001
            pass


def _mv_parse(mv, latex: str):
    return mv["parse"]("\\boxed{" + latex + "}", extraction_config=mv["config"], parsing_timeout=None)


def _mv_compare(pred: str, gold: str, mv=None) -> bool:
    """math-verify's verdict on two prepared LaTeX strings, plus a numeric check for decimal golds."""
    mv = mv or load_math_verify()
    gold_cache = mv["gold_cache"]
    if gold not in gold_cache:
        gold_cache[gold] = _mv_parse(mv, gold)
        if len(gold_cache) > 2048:
            gold_cache.popitem(last=False)
    parsed_gold, parsed_pred = gold_cache[gold], _mv_parse(mv, pred)
    if not parsed_gold or not parsed_pred:
        return False
    if mv["verify_fn"](parsed_gold, parsed_pred, timeout_seconds=None):
        return True
    gold_value = gold_number(gold)
    if gold_value is None or gold_value.exact:
        return False
    value = _sympy_number(parsed_pred[0])
    return value is not None and numbers_equal(value, gold_value)


def _sympy_number(expr) -> Number | None:
    """Numeric value of a parsed, symbol-free, real sympy expression (under the caller's deadline)."""
    from fractions import Fraction

    if not hasattr(expr, "evalf") or getattr(expr, "free_symbols", True):
        return None
    try:
        value = complex(expr.evalf(30))
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        return None
    if abs(value.imag) > 1e-12 * max(1.0, abs(value.real)) or value.real != value.real:
        return None
    if value.real in (float("inf"), float("-inf")):
        return None
    return Number(Fraction(value.real), False)


def signals_usable() -> bool:
    """True when a SIGALRM deadline can be set here: POSIX, the main thread, no timer running."""
    return (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0)


def _call_with_deadline(fn, seconds: float):
    """``fn()`` or ``_Deadline`` (returned) after ``seconds``; main thread only (SIGALRM).

    The timer re-fires every 0.25 s until cancelled, so code that swallows one exception is
    interrupted again. It bounds Python-level work only; C-level giants are kept out by
    :func:`egrc_lite.grading.guards.risk`.
    """
    armed = [True]

    def on_alarm(signum, frame):
        if armed[0]:
            raise _Deadline()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, seconds, 0.25)
            return fn()
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        return _Deadline
    finally:
        signal.signal(signal.SIGALRM, previous)


def compare_in_process(pred: str, gold: str) -> bool:
    """One bounded math-verify comparison in this process (main thread only)."""
    verdict, timed_out = compare_in_process_timed(pred, gold)
    if timed_out:
        logger.warning("grading: comparison timed out after %.1f s: %s", MV_BUDGET_S, short(pred))
    return verdict


def compare_in_process_timed(pred: str, gold: str) -> tuple[bool, bool]:
    """(verdict, timed_out); decided verdicts are cached, timeouts are not."""
    key = (mv_latex(pred), mv_latex(gold))
    with _MV_LOCK:
        if key in VERDICT_CACHE:
            VERDICT_CACHE.move_to_end(key)
            return VERDICT_CACHE[key], False
    load_math_verify()  # import outside the deadline
    try:
        verdict = _call_with_deadline(lambda: _mv_compare(*key), MV_BUDGET_S)
    except Exception as exc:  # noqa: BLE001
        logger.debug("grading: math-verify raised %s on %s", type(exc).__name__, short(pred))
        verdict = False
    if verdict is _Deadline:
        return False, True
    with _MV_LOCK:
        VERDICT_CACHE[key] = bool(verdict)
        if len(VERDICT_CACHE) > _VERDICT_CACHE_MAX:
            VERDICT_CACHE.popitem(last=False)
    return bool(verdict), False
