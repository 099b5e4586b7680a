"""Extract a model's final answer and decide whether it equals the gold answer; bounded, never eval().

One grader serves evaluation and rewards. A verdict is made in three layers, cheapest first:

1. extraction (:mod:`egrc_lite.grading.extract`): the last ``\\boxed{...}`` / ``\\fbox{...}``
   after ``</think>`` (or the last number);
2. a pure-Python verdict (:func:`egrc_lite.grading.quick.quick_verdict`): canonical strings equal,
   numbers equal (fractions, decimals, e-notation, percent), tuples, unordered answer lists;
3. math-verify (sympy) for the rest (:mod:`egrc_lite.grading.mathverify`), behind guards (length,
   nesting, exponent towers, factorials: :mod:`egrc_lite.grading.guards`) and a hard deadline: a
   SIGALRM timer in the main thread, a killable worker process elsewhere
   (:mod:`egrc_lite.grading.pool`).

So ``grade(r, g) = answer(r) is not None and equal(answer(r), g)`` where ``equal`` is the first layer
that decides. Model outputs are hostile: a call spends at most ``MV_BUDGET_S`` seconds in sympy
(a pool worker is killed after ``HARD_DEADLINE_S``), returns False instead of raising, and logs at
most a short prefix of any input. The first math-verify comparison in a process also imports it and
warms sympy up (~2 s, once, outside the deadline); off the main thread the first call also starts
a worker process. This module holds the public API and decides where each math-verify comparison
runs; importing it imports neither sympy nor math-verify.

Owns, besides this facade: ``extract`` (answer extraction), ``quick`` and ``refute`` (pure-Python
verdicts), ``numbers`` (number parsing and equality), ``text`` (normalisation), ``guards``
(hostile-input limits), ``mathverify`` (the bounded math-verify call) and ``pool`` (killable workers).

May import: errors. (Pure and self-contained: nothing else in egrc-lite.)

>>> grade("<think>1+1</think> The answer is $\\\\boxed{\\\\dfrac{4}{2}}$.", "2")
True
>>> grade_many([("\\\\boxed{0.5}", "\\\\frac12"), ("\\\\boxed{3}", "4")])
[True, False]
"""

from __future__ import annotations

import logging
import os
from typing import Iterable

from egrc_lite.grading.extract import ANSWER_RULES, check_answer_rule, extract, extract_answer, extract_last_number
from egrc_lite.grading.guards import MAX_ANSWER_CHARS, MAX_DEPTH, risk
from egrc_lite.grading.mathverify import MV_BUDGET_S, VERDICT_CACHE, compare_in_process, mv_latex, signals_usable
from egrc_lite.grading.pool import POOL, WORKER_START_S
from egrc_lite.grading.quick import quick_verdict
from egrc_lite.grading.text import nesting_depth, sanitize, short

__all__ = ["ANSWER_RULES", "COLD_POOL_MIN", "HARD_DEADLINE_S", "MV_BUDGET_S", "SMALL_BATCH", "WORKER_START_S",
           "extract_answer", "extract_last_number", "grade", "grade_answer", "grade_many", "shutdown_pool",
           "warm_pool"]

logger = logging.getLogger(__name__)

HARD_DEADLINE_S = 4.0  # wall time a pool worker gets for one comparison before it is killed
SMALL_BATCH = 32  # at most this many math-verify comparisons are done in-process
COLD_POOL_MIN = 200  # ... or this many while no worker is running (a start costs ~1.5 s CPU each)
_CACHE = VERDICT_CACHE  # math-verify verdicts by prepared (pred, gold), shared with grading.mathverify


# ---------------------------------------------------------------------------------------------
# verdicts
# ---------------------------------------------------------------------------------------------
def _pre_verdict(pred: str, gold: str) -> bool | None:
    """Caps and the pure-Python verdict; None means "ask math-verify" (both inputs sanitised)."""
    if not pred or not gold:
        return False
    if len(pred) > MAX_ANSWER_CHARS or nesting_depth(pred) > MAX_DEPTH:
        logger.info("grading: answer refused (too long or too deep): %s", short(pred))
        return False
    verdict = quick_verdict(pred, gold)
    if verdict is not None:
        return verdict
    reason = risk(mv_latex(pred)) or risk(mv_latex(gold))
    if reason:
        logger.info("grading: answer refused (%s): %s", reason, short(pred))
        return False
    return None


def grade_answer(pred: str, gold: str) -> bool:
    """True when the already-extracted answer ``pred`` equals ``gold`` mathematically.

    >>> grade_answer("x = 3", "3"), grade_answer(r"3.83 \\times 10^{35}", "3.83e35"), grade_answer("(1,2)", "(2,1)")
    (True, True, False)
    """
    pred, gold = sanitize(pred), sanitize(gold)
    if pred is None or gold is None:
        return False
    try:
        verdict = _pre_verdict(pred.strip(), gold.strip())
        return verdict if verdict is not None else _mv_bounded(pred.strip(), gold.strip())
    except Exception as exc:  # noqa: BLE001 - hostile input must not raise
        logger.warning("grading: %s on %s", type(exc).__name__, short(pred))
        return False


def grade(response: str, gold: str, *, answer_rule: str = "boxed") -> bool:
    """True when the answer extracted from ``response`` by ``answer_rule`` equals ``gold``.

    ``answer_rule``: ``"boxed"`` (:func:`extract_answer`) or ``"last_number"``
    (:func:`extract_last_number`); anything else raises ValueError.

    >>> grade("<think>...</think> \\\\boxed{90^\\\\circ}", "90"), grade("It is 41.", "42", answer_rule="last_number")
    (True, False)
    """
    check_answer_rule(answer_rule)
    pred = extract(response, answer_rule)
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
    check_answer_rule(answer_rule)
    pairs = list(pairs)
    out = [False] * len(pairs)
    by_answer = _group_by_answer(pairs, answer_rule)
    ask: list[tuple[str, str]] = []
    for key, idxs in by_answer.items():
        try:
            verdict = _pre_verdict(*key)
        except Exception as exc:  # noqa: BLE001
            logger.warning("grading: %s on %s", type(exc).__name__, short(key[0]))
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



def grade_each(pairs: Iterable[tuple[str, str]], *, answer_rule: str = "boxed") -> list[bool]:
    """:func:`grade_many` that never raises, for evaluation, analysis and rewards alike.

    Should the batch fail, the pairs are graded one by one, and a pair whose grading raises is
    False: one hostile output never loses a whole batch.

    >>> grade_each([("\\\\boxed{2}", "2"), ("\\\\boxed{3}", "2")])
    [True, False]
    """
    check_answer_rule(answer_rule)  # a wrong rule is the caller's bug, not a hostile output
    pairs = list(pairs)
    try:
        return [bool(v) for v in grade_many(pairs, answer_rule=answer_rule)]
    except Exception as err:  # noqa: BLE001 - one bad output must not lose a whole batch
        logger.warning("grade_many failed (%s); grading one by one", type(err).__name__)
    out = []
    for response, gold in pairs:
        try:
            out.append(bool(grade(response, gold, answer_rule=answer_rule)))
        except Exception:  # noqa: BLE001
            out.append(False)
    return out

def _group_by_answer(pairs: list[tuple[str, str]], answer_rule: str) -> dict[tuple[str, str], list[int]]:
    """Indices of ``pairs`` by (extracted answer, gold), each distinct pair extracted once;
    pairs without an answer are left out (their verdict is False)."""
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
    return by_answer


def _answer_key(response: object, gold: object, answer_rule: str) -> tuple[str, str] | None:
    pred = extract(response, answer_rule)
    gold = sanitize(gold)
    if pred is None or gold is None:
        return None
    return pred.strip(), gold.strip()


# ---------------------------------------------------------------------------------------------
# where math-verify runs: in this process under SIGALRM, or on the worker pool
# ---------------------------------------------------------------------------------------------
def _mv_bounded(pred: str, gold: str) -> bool:
    if signals_usable():
        return compare_in_process(pred, gold)
    return _mv_batch([(pred, gold)], 1)[0]


def _mv_batch(items: list[tuple[str, str]], workers: int | None) -> list[bool]:
    if not items:
        return []
    n = (os.cpu_count() or 1) if workers is None else workers
    small = len(items) <= (SMALL_BATCH if POOL.warm() else COLD_POOL_MIN)
    if signals_usable() and (small or n <= 0):
        return [compare_in_process(p, g) for p, g in items]
    try:
        return POOL.map(items, max(1, min(n, len(items))), deadline_s=HARD_DEADLINE_S, helper=signals_usable())
    except RuntimeError as exc:
        logger.warning("grading: worker pool unavailable (%s)", exc)
        if signals_usable():
            return [compare_in_process(p, g) for p, g in items]
        return [False] * len(items)


def warm_pool(workers: int | None = None) -> None:
    """Start ``workers`` grading processes (default: CPU count) and wait until they are ready,
    e.g. before a timed evaluation; :func:`grade_many` then uses them for any batch of more
    than ``SMALL_BATCH`` math-verify comparisons."""
    n = max(1, (os.cpu_count() or 1) if workers is None else workers)
    POOL.map([("1", "2")] * n, n, deadline_s=HARD_DEADLINE_S)


def shutdown_pool() -> None:
    """Stop the grading worker processes (they are restarted on demand)."""
    POOL.shutdown()
