"""Extract a model's final answer and decide whether it equals the gold answer; bounded, never eval().

One grader serves evaluation and rewards. A verdict is made in three layers, cheapest first:

1. extraction: the last ``\\boxed{...}`` / ``\\fbox{...}`` after ``</think>`` (or the last number);
2. a pure-Python verdict (:func:`egrc_lite.normalize.quick_verdict`): canonical strings equal,
   numbers equal (fractions, decimals, e-notation, percent), tuples, unordered answer lists;
3. math-verify (sympy) for the rest, behind guards (length, nesting, exponent towers, factorials)
   and a hard deadline: a SIGALRM timer in the main thread, a killable worker process elsewhere.

So ``grade(r, g) = answer(r) is not None and equal(answer(r), g)`` where ``equal`` is the first layer
that decides. Model outputs are hostile: a call spends at most ``MV_BUDGET_S`` seconds in sympy
(a pool worker is killed after ``HARD_DEADLINE_S``), returns False instead of raising, and logs at
most a short prefix of any input. The first math-verify comparison in a process also imports it and
warms sympy up (~2 s, once, outside the deadline); off the main thread the first call also starts
a worker process.

>>> grade("<think>1+1</think> The answer is $\\\\boxed{\\\\dfrac{4}{2}}$.", "2")
True
>>> grade_many([("\\\\boxed{0.5}", "\\\\frac12"), ("\\\\boxed{3}", "4")])
[True, False]
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import signal
import threading
import time
from collections import OrderedDict, deque
from typing import Iterable

from egrc_lite import normalize as N

logger = logging.getLogger(__name__)

ANSWER_RULES = ("boxed", "last_number")
MV_BUDGET_S = 1.5  # sympy time for one comparison before it counts as "not equal"
HARD_DEADLINE_S = 4.0  # wall time a pool worker gets for one comparison before it is killed
WORKER_START_S = 60.0  # a fresh worker must report ready within this
SMALL_BATCH = 32  # at most this many math-verify comparisons are done in-process
COLD_POOL_MIN = 200  # ... or this many while no worker is running (a start costs ~1.5 s CPU each)

# ---------------------------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------------------------
_THINK_CLOSE = "</think>"
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.S)
_TOKEN = re.compile(r"[^\s$]+")
_NUMBER = re.compile(r"(?<![\d.])(-?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?|(?<![\d.])(-?)\.(\d+)")


def _answer_region(response: object) -> str | None:
    text = N.sanitize(response)
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
        if answer[j:j + 1] != "{" or N.brace_partner(answer, j) != len(answer) - 1:
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


# ---------------------------------------------------------------------------------------------
# verdicts
# ---------------------------------------------------------------------------------------------
def _check_rule(answer_rule: str) -> None:
    if answer_rule not in ANSWER_RULES:
        raise ValueError(f"unknown answer_rule {answer_rule!r}; valid: {', '.join(ANSWER_RULES)}")


def _extract(response: object, answer_rule: str) -> str | None:
    return extract_answer(response) if answer_rule == "boxed" else extract_last_number(response)


def _pre_verdict(pred: str, gold: str) -> bool | None:
    """Caps and the pure-Python verdict; None means "ask math-verify" (both inputs sanitised)."""
    if not pred or not gold:
        return False
    if len(pred) > N.MAX_ANSWER_CHARS or N.nesting_depth(pred) > N.MAX_DEPTH:
        logger.info("grading: answer refused (too long or too deep): %s", N.short(pred))
        return False
    verdict = N.quick_verdict(pred, gold)
    if verdict is not None:
        return verdict
    reason = N.risk(N.mv_latex(pred)) or N.risk(N.mv_latex(gold))
    if reason:
        logger.info("grading: answer refused (%s): %s", reason, N.short(pred))
        return False
    return None


def grade_answer(pred: str, gold: str) -> bool:
    """True when the already-extracted answer ``pred`` equals ``gold`` mathematically.

    >>> grade_answer("x = 3", "3"), grade_answer(r"3.83 \\times 10^{35}", "3.83e35"), grade_answer("(1,2)", "(2,1)")
    (True, True, False)
    """
    pred, gold = N.sanitize(pred), N.sanitize(gold)
    if pred is None or gold is None:
        return False
    try:
        verdict = _pre_verdict(pred.strip(), gold.strip())
        return verdict if verdict is not None else _mv_bounded(pred.strip(), gold.strip())
    except Exception as exc:  # noqa: BLE001 - hostile input must not raise
        logger.warning("grading: %s on %s", type(exc).__name__, N.short(pred))
        return False


def grade(response: str, gold: str, *, answer_rule: str = "boxed") -> bool:
    """True when the answer extracted from ``response`` by ``answer_rule`` equals ``gold``.

    ``answer_rule``: ``"boxed"`` (:func:`extract_answer`) or ``"last_number"``
    (:func:`extract_last_number`); anything else raises ValueError.

    >>> grade("<think>...</think> \\\\boxed{90^\\\\circ}", "90"), grade("It is 41.", "42", answer_rule="last_number")
    (True, False)
    """
    _check_rule(answer_rule)
    pred = _extract(response, answer_rule)
    return False if pred is None else grade_answer(pred, gold)


def grade_many(pairs: Iterable[tuple[str, str]], *, answer_rule: str = "boxed",
               workers: int | None = None) -> list[bool]:
    """``[grade(r, g, answer_rule=answer_rule) for r, g in pairs]``, fast.

    Identical pairs (and identical extracted answers) are graded once; pure-Python verdicts are
    taken in-process; the remaining math-verify comparisons run in-process (main thread only)
    when there are at most ``SMALL_BATCH`` of them (``COLD_POOL_MIN`` while no worker runs yet),
    else on a pool of ``workers`` processes (default: CPU count; ``0`` forces in-process on the
    main thread) that is kept for later calls, each comparison under a hard wall-clock deadline
    after which the worker is killed and the verdict is False.

    >>> grade_many([("\\\\boxed{1,3}", "3,1"), ("\\\\boxed{1,3}", "3,1"), ("none", "1")])
    [True, True, False]
    """
    _check_rule(answer_rule)
    pairs = list(pairs)
    out = [False] * len(pairs)
    by_answer: dict[tuple[str, str], list[int]] = {}
    seen: dict[object, tuple[str, str] | None] = {}
    for i, (response, gold) in enumerate(pairs):
        try:
            key = seen[(response, gold)] if (response, gold) in seen else None
            cached = (response, gold) in seen
        except TypeError:  # unhashable input
            key, cached = None, False
        if not cached:
            key = _answer_key(response, gold, answer_rule)
            try:
                seen[(response, gold)] = key
            except TypeError:
                pass
        if key is not None:
            by_answer.setdefault(key, []).append(i)
    ask: list[tuple[str, str]] = []
    for key, idxs in by_answer.items():
        try:
            verdict = _pre_verdict(*key)
        except Exception as exc:  # noqa: BLE001
            logger.warning("grading: %s on %s", type(exc).__name__, N.short(key[0]))
            verdict = False
        if verdict is None:
            ask.append(key)
        else:
            for i in idxs:
                out[i] = verdict
    for key, verdict in zip(ask, _mv_batch(ask, workers), strict=True):
        for i in by_answer[key]:
            out[i] = verdict
    return out


def _answer_key(response: object, gold: object, answer_rule: str) -> tuple[str, str] | None:
    pred = _extract(response, answer_rule)
    gold = N.sanitize(gold)
    if pred is None or gold is None:
        return None
    return pred.strip(), gold.strip()


# ---------------------------------------------------------------------------------------------
# math-verify behind a deadline
# ---------------------------------------------------------------------------------------------
class _Deadline(BaseException):
    """Raised by our SIGALRM handler; a BaseException so that ``except Exception`` can't eat it."""


_MV_LOCK = threading.Lock()
_MV_STATE: dict[str, object] = {}
_CACHE: OrderedDict[tuple[str, str], bool] = OrderedDict()
_CACHE_MAX = 4096


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
            record.msg, record.args = N.short(msg, 150), None
            record.exc_info = record.exc_text = None
        return True


def _mv():
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
    mv = mv or _mv()
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
    gold_number = N.gold_number(gold)
    if gold_number is None or gold_number.exact:
        return False
    value = _sympy_number(parsed_pred[0])
    return value is not None and N.numbers_equal(value, gold_number)


def _sympy_number(expr) -> N.Number | None:
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
    return N.Number(Fraction(value.real), False)


def _signals_usable() -> bool:
    return (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0)


def _call_with_deadline(fn, seconds: float):
    """``fn()`` or ``_Deadline`` (returned) after ``seconds``; main thread only (SIGALRM).

    The timer re-fires every 0.25 s until cancelled, so code that swallows one exception is
    interrupted again. It bounds Python-level work only; C-level giants are kept out by
    :func:`egrc_lite.normalize.risk`.
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


def _mv_local(pred: str, gold: str) -> bool:
    """One bounded math-verify comparison in this process (main thread only)."""
    verdict, timed_out = _mv_local_ex(pred, gold)
    if timed_out:
        logger.warning("grading: comparison timed out after %.1f s: %s", MV_BUDGET_S, N.short(pred))
    return verdict


def _mv_local_ex(pred: str, gold: str) -> tuple[bool, bool]:
    """(verdict, timed_out); decided verdicts are cached, timeouts are not."""
    key = (N.mv_latex(pred), N.mv_latex(gold))
    with _MV_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key], False
    _mv()  # import outside the deadline
    try:
        verdict = _call_with_deadline(lambda: _mv_compare(*key), MV_BUDGET_S)
    except Exception as exc:  # noqa: BLE001
        logger.debug("grading: math-verify raised %s on %s", type(exc).__name__, N.short(pred))
        verdict = False
    if verdict is _Deadline:
        return False, True
    with _MV_LOCK:
        _CACHE[key] = bool(verdict)
        if len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return bool(verdict), False


def _mv_bounded(pred: str, gold: str) -> bool:
    if _signals_usable():
        return _mv_local(pred, gold)
    return _mv_batch([(pred, gold)], 1)[0]


def _mv_batch(items: list[tuple[str, str]], workers: int | None) -> list[bool]:
    if not items:
        return []
    n = (os.cpu_count() or 1) if workers is None else workers
    small = len(items) <= (SMALL_BATCH if _POOL.warm() else COLD_POOL_MIN)
    if _signals_usable() and (small or n <= 0):
        return [_mv_local(p, g) for p, g in items]
    try:
        return _POOL.map(items, max(1, min(n, len(items))), helper=_signals_usable())
    except RuntimeError as exc:
        logger.warning("grading: worker pool unavailable (%s)", exc)
        if _signals_usable():
            return [_mv_local(p, g) for p, g in items]
        return [False] * len(items)


# ---------------------------------------------------------------------------------------------
# a small process pool whose workers can be killed one at a time
# ---------------------------------------------------------------------------------------------
def _serve(read_fd: int, write_fd: int) -> None:
    """Worker loop (a fresh interpreter): JSON ``[idx, pred, gold]`` in, ``["done", idx, verdict,
    timed_out]`` out, ``null`` or EOF stops it. Its own logs are dropped; the parent reports."""
    from multiprocessing.connection import Connection

    logging.getLogger().addHandler(logging.NullHandler())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rx, tx = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        _mv()  # includes the warm-up, so a fresh worker's first item is not slow for being cold
    except Exception:  # noqa: BLE001 - every item then answers False
        pass
    tx.send_bytes(b'["ready"]')
    while True:
        try:
            msg = json.loads(rx.recv_bytes())
        except (EOFError, OSError, ValueError):
            return
        if msg is None:
            return
        idx, pred, gold = msg
        try:
            verdict, timed_out = _mv_local_ex(pred, gold)
        except BaseException:  # noqa: BLE001
            verdict, timed_out = False, False
        tx.send_bytes(json.dumps(["done", idx, verdict, timed_out]).encode())


class _Worker:
    """``python -c`` running :func:`_serve`: a fresh interpreter, so nothing of the caller's
    ``__main__`` is re-imported and starting one is safe from a threaded parent."""

    def __init__(self):
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        paths = [p for p in sys.path if isinstance(p, str)]
        code = (f"import sys; sys.path[:0] = {paths!r}; "
                f"from egrc_lite.grading import _serve; _serve({down_r}, {up_w})")
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(down_r, up_w),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        finally:
            os.close(down_r)
            os.close(up_w)
        self.tx, self.rx = Connection(down_w, readable=False), Connection(up_r, writable=False)
        self.ready, self.task, self.since = False, None, time.monotonic()

    def send(self, msg) -> None:
        self.tx.send_bytes(json.dumps(msg).encode())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        for closer in (self.proc.kill, lambda: self.proc.wait(2), self.tx.close, self.rx.close):
            try:
                closer()
            except Exception:  # noqa: BLE001
                pass


class _Pool:
    """Workers started on demand and kept for later calls (at most CPU count idle ones)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def warm(self) -> bool:
        with self._lock:
            return bool(self._idle)

    def map(self, items: list[tuple[str, str]], n: int, helper: bool = False) -> list[bool]:
        """Verdicts for ``items`` on ``n`` workers; with ``helper`` this (main) thread grades
        items itself until a worker is ready, so a cold start costs no wall time."""
        with self._lock:
            workers = [self._idle.pop() for _ in range(min(n, len(self._idle)))]
        try:
            while len(workers) < n:
                workers.append(_Worker())
            return self._drive(workers, items, helper)
        finally:
            keep = [w for w in workers if w.task is None and w.alive()]
            with self._lock:
                self._idle.extend(keep)
                extra = self._idle[max(os.cpu_count() or 1, 1):]
                del self._idle[len(self._idle) - len(extra):]
            for w in [w for w in workers if w not in keep] + extra:
                w.kill()

    def _drive(self, workers: list[_Worker], items: list[tuple[str, str]], helper: bool) -> list[bool]:
        from multiprocessing.connection import wait

        results, failures = [False] * len(items), 0
        todo = deque(sorted(range(len(items)), key=lambda i: items[i][1]))  # same gold, same worker caches
        while todo or any(w.task is not None for w in workers):
            for w in workers:
                if w.ready and w.task is None and todo:
                    i = todo.popleft()
                    w.send([i, *items[i]])
                    w.task, w.since = i, time.monotonic()
            waiting = {w.rx: w for w in workers if not w.ready or w.task is not None}
            horizon = min(w.since + (HARD_DEADLINE_S if w.ready else WORKER_START_S) for w in waiting.values())
            if helper and todo and not any(w.ready for w in workers):
                horizon = time.monotonic()  # only poll: this thread has work of its own
            for conn in wait(list(waiting), timeout=max(0.0, horizon - time.monotonic())):
                w = waiting[conn]
                try:
                    msg = json.loads(conn.recv_bytes())
                except (EOFError, OSError, ValueError):
                    failures += self._replace(workers, w, "died", items)
                    continue
                if msg[0] == "ready":
                    w.ready = True
                else:
                    _, idx, verdict, timed_out = msg
                    results[idx], w.task = bool(verdict), None
                    if timed_out:
                        logger.warning("grading: comparison timed out after %.1f s: %s",
                                       MV_BUDGET_S, N.short(items[idx][0]))
            now = time.monotonic()
            for w in list(workers):
                if w.ready and w.task is not None and now - w.since > HARD_DEADLINE_S:
                    failures += self._replace(workers, w, f"killed after {HARD_DEADLINE_S:.1f} s", items)
                elif not w.ready and now - w.since > WORKER_START_S:
                    failures += self._replace(workers, w, "did not start", items)
            if failures > 3 + len(items):
                raise RuntimeError("grading workers keep failing")
            if helper and todo and not any(w.ready for w in workers):
                i = todo.pop()
                results[i] = _mv_local(*items[i])
        return results

    def _replace(self, workers: list[_Worker], w: _Worker, why: str, items) -> int:
        what = f" on {N.short(items[w.task][0])}" if w.task is not None else ""
        logger.warning("grading: worker %s%s", why, what)
        w.kill()
        workers[workers.index(w)] = _Worker()
        return 1

    def shutdown(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            try:
                w.tx.send_bytes(b"null")
                w.proc.wait(0.5)
            except Exception:  # noqa: BLE001
                pass
            w.kill()


_POOL = _Pool()
atexit.register(_POOL.shutdown)


def warm_pool(workers: int | None = None) -> None:
    """Start ``workers`` grading processes (default: CPU count) and wait until they are ready,
    e.g. before a timed evaluation; :func:`grade_many` then uses them for any batch of more
    than ``SMALL_BATCH`` math-verify comparisons."""
    n = max(1, (os.cpu_count() or 1) if workers is None else workers)
    _POOL.map([("1", "2")] * n, n)


def shutdown_pool() -> None:
    """Stop the grading worker processes (they are restarted on demand)."""
    _POOL.shutdown()
