"""Thinking-efficiency metrics from the per-sample records of an evaluation (no regeneration).

Pure Python, no torch. Two questions about a benchmark's responses:

**How much accuracy does a token budget buy?** ``acc@B`` counts a sample correct only when it is
correct *and* finished within ``B`` generated tokens, Pass@1-style like
:func:`egrc_lite.evaluation.metrics.summarize`'s ``acc`` (a percentage)::

    acc@B = 100 * (1/P) sum_p (1/n_p) sum_i [correct_{p,i} and total_tokens_{p,i} <= B]

over the budgets of :func:`budget_grid`: powers of two from
``start = max(1, min(256, pow2floor(max_tokens) // 8))`` below ``max_tokens``, then ``max_tokens``
itself. A long-reasoning cap gets the usual 256, 512, ... (32768 -> 256 ... 16384, 32768); a short
cap starts lower so that it still gets a curve of four points (256 -> 32, 64, 128, 256). A
response cut off at the cap has ``total_tokens == max_tokens``, so at the last budget it counts
exactly as ACC counts it: the last value is ACC. The area under that curve over ``x = log2 B``
(trapezoids), normalised to 0-100::

    acc_budget_auc = sum_k (x_{k+1} - x_k) (acc_k + acc_{k+1}) / 2  /  (x_K - x_1)

(with one budget, that budget's accuracy). A model that is right early scores close to its ACC;
one that needs the whole cap scores far below it.

**Where does a correct response first state its answer, and how much follows?** Candidates are
every ``\\boxed{...}`` / ``\\fbox{...}`` span, every "answer is X" span and every number of the
response (the thinking included), ordered by where they end; the first one the grader judges equal
to the gold ends at character ``end`` (:func:`first_answer_end`). Then::

    first_answer_tokens    = count_tokens(response[:end])      (capped at total_tokens)
                             or round(total_tokens * end / len(response))   (an estimate)
    reflection_tail_tokens = total_tokens - first_answer_tokens  (>= 0)

with means and medians over the correct samples whose first answer was found
(``first_answer_found`` is that fraction of the correct samples). Numbers are judged by the
pure-Python verdict only (:func:`egrc_lite.grading.quick.quick_verdict`); boxed and "answer is"
spans by it too, and by :func:`egrc_lite.grading.grade_answer` (bounded math-verify) when it cannot
tell. Kept bounded: at most :data:`MAX_CANDIDATES` distinct candidates are judged per response, at
most :data:`MAX_SPANS` of them by math-verify; a sample whose answer lies beyond is not found.

>>> budget_grid(32768)[:3], budget_grid(32768)[-2:], budget_grid(256)
([256, 512, 1024], [16384, 32768], [32, 64, 128, 256])
>>> recs = [{"problem_id": "p", "correct": True, "total_tokens": 100},
...         {"problem_id": "p", "correct": True, "total_tokens": 300}]
>>> acc_at_budget(recs, [128, 256, 512, 1024])
{128: 50.0, 256: 50.0, 512: 100.0, 1024: 100.0}
>>> budget_auc({128: 50.0, 256: 50.0, 512: 100.0, 1024: 100.0})  # (50 + 75 + 100) / 3
75.0
>>> text = "12. Wait, let me verify: 5 + 7 = 12, so the answer is \\\\boxed{12}."
>>> first_answer_end(text, "12"), first_answer_end(text, "13")
(2, None)
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from egrc_lite.grading import grade_answer
from egrc_lite.grading.guards import MAX_ANSWER_CHARS
from egrc_lite.grading.quick import quick_verdict
from egrc_lite.grading.text import brace_partner, sanitize

MAX_CANDIDATES = 500
"""Distinct candidate answers judged per response (repeats of one are judged once)."""
MAX_SPANS = 32
"""Of those, boxed / "answer is" spans that the quick verdict cannot decide and ``grade_answer`` judges
(math-verify, :data:`egrc_lite.grading.MV_BUDGET_S` seconds at most each)."""
FIRST_BUDGET = 256
"""The first budget of a long cap; a short cap starts at ``pow2floor(max_tokens) // 8``."""

EFFICIENCY_KEYS = ("acc_at_budget", "acc_budget_auc", "first_answer_tokens_mean", "first_answer_tokens_median",
                   "reflection_tail_tokens_mean", "reflection_tail_tokens_median", "first_answer_found",
                   "first_answer_unit")
"""The keys :func:`efficiency_summary` adds to a benchmark's summary entry."""

CountTokens = Callable[[str], int]

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BOX_TOKEN = re.compile(r"[^\s$]+")
_ANSWER_IS = re.compile(r"\banswer\s+is\b\s*:?\s*", re.IGNORECASE)
_SPAN_END = re.compile(r"\n|\$|[.;!?](?=\s|$)")
_NUMBER = re.compile(r"(?<![\d.])(-?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?|(?<![\d.])(-?)\.(\d+)")
_SPAN_CHARS = 100  # an "answer is" span ends at the sentence's end or after this many characters


# ---------------------------------------------------------------------------------------- budgets

def budget_grid(max_tokens: int) -> list[int]:
    """Powers of two from ``max(1, min(256, pow2floor(max_tokens) // 8))`` below ``max_tokens``, then ``max_tokens``.

    >>> budget_grid(1024), budget_grid(1000), budget_grid(5), budget_grid(1)
    ([128, 256, 512, 1024], [64, 128, 256, 512, 1000], [1, 2, 4, 5], [1])
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a whole number >= 1, got {max_tokens!r}")
    budget = max(1, min(FIRST_BUDGET, (1 << (max_tokens.bit_length() - 1)) // 8))
    grid = []
    while budget < max_tokens:
        grid.append(budget)
        budget *= 2
    return grid + [max_tokens]


def acc_at_budget(records: Sequence[Mapping[str, Any]], budgets: Iterable[int]) -> dict[int, float]:
    """``{B: acc@B}`` in percent: correct and ``total_tokens <= B``, averaged per problem, then over problems.

    >>> acc_at_budget([{"problem_id": "a", "correct": True, "total_tokens": 64},
    ...                {"problem_id": "b", "correct": False, "total_tokens": 10}], [32, 64])
    {32: 0.0, 64: 50.0}
    """
    by_problem: dict[Any, list[tuple[bool, float]]] = {}
    for i, rec in enumerate(records):
        missing = [k for k in ("problem_id", "correct", "total_tokens") if k not in rec]
        if missing:
            raise ValueError(f"record {i} lacks {', '.join(missing)}")
        by_problem.setdefault(rec["problem_id"], []).append((bool(rec["correct"]), float(rec["total_tokens"])))
    if not by_problem:
        raise ValueError("acc_at_budget needs at least one record")
    out = {}
    for budget in budgets:
        per_problem = [sum(ok and n <= budget for ok, n in samples) / len(samples) for samples in by_problem.values()]
        out[budget] = 100.0 * sum(per_problem) / len(per_problem)
    return out


def budget_auc(curve: Mapping[int, float]) -> float:
    """Area under ``acc`` over ``log2 B`` between the first and last budget, divided by that x range.

    >>> budget_auc({32: 0.0, 64: 50.0, 128: 100.0}), budget_auc({256: 40.0})
    (50.0, 40.0)
    """
    points = sorted((math.log2(b), float(acc)) for b, acc in curve.items())
    if not points:
        raise ValueError("budget_auc needs at least one budget")
    if len(points) == 1:
        return points[0][1]
    area = sum((x1 - x0) * (a0 + a1) / 2 for (x0, a0), (x1, a1) in itertools.pairwise(points))
    return area / (points[-1][0] - points[0][0])


# ---------------------------------------------------------------------------------------- first answer

def _box_candidates(text: str) -> Iterable[tuple[int, str]]:
    """``(end, content)`` of every ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5``; unclosed boxes are skipped."""
    for box in _BOX.finditer(text):
        i = box.end()
        while i < len(text) and text[i] in " \t\n":
            i += 1
        if i < len(text) and text[i] == "{":
            close = brace_partner(text[i:i + MAX_ANSWER_CHARS + 2], 0)  # a longer answer is refused anyway
            if close > 0 and text[i + 1:i + close].strip():
                yield i + close + 1, text[i + 1:i + close].strip()
        elif i > box.end() and (tok := _BOX_TOKEN.match(text, i)):
            content = tok.group(0).rstrip(".,;:")
            if content:
                yield i + len(content), content


def _answer_is_candidates(text: str) -> Iterable[tuple[int, str]]:
    """``(end, span)`` after every "answer is": a ``$...$`` formula, else the text up to the sentence's end."""
    for m in _ANSWER_IS.finditer(text):
        start = m.end()
        if text.startswith("$", start):
            close = text.find("$", start + 1, start + 1 + MAX_ANSWER_CHARS)
            if close > start + 1:
                yield close + 1, text[start:close + 1]
            continue
        if _BOX.match(text, start):
            continue  # the box is a candidate of its own
        window = text[start:start + _SPAN_CHARS]
        stop = _SPAN_END.search(window)
        span = (window[:stop.start()] if stop else window).rstrip(" ,:")
        if span.strip():
            yield start + len(span), span.strip()


def _number_candidates(text: str) -> Iterable[tuple[int, str]]:
    """``(end, number)`` of every number, read as :func:`egrc_lite.grading.extract_last_number` reads the last."""
    for m in _NUMBER.finditer(text):
        if m.group(2):
            sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
        else:
            sign, whole, frac = m.group(4), "0", "." + m.group(5)
        if sign and m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] in ")]}"):
            sign = ""
        yield m.end(), f"{sign}{whole.replace(',', '')}{frac}"


def first_answer_end(response: str, gold: str) -> int | None:
    """Character offset where the first candidate equal to ``gold`` ends, or None (none found within the caps).

    Candidates, ordered by where they end: boxed spans and "answer is" spans (the pure-Python quick
    verdict, then :func:`egrc_lite.grading.grade_answer` when it cannot tell, :data:`MAX_SPANS` times
    at most) and numbers (the quick verdict only). Any number counts, so a gold that also occurs in
    the problem's data is "found" where the response first restates it.

    >>> first_answer_end("So x = 3/4, i.e. the answer is $\\\\frac{3}{4}$.", r"\\frac34")
    44
    >>> first_answer_end("The answer is 12", "12"), first_answer_end("no digits here", "1")
    (16, None)
    """
    gold = sanitize(gold)
    if not isinstance(response, str) or not response or gold is None or not gold.strip():
        return None
    gold = gold.strip()
    candidates = [(end, 0, c) for end, c in _box_candidates(response)]
    candidates += [(end, 0, c) for end, c in _answer_is_candidates(response)]
    candidates += [(end, 1, c) for end, c in _number_candidates(response)]
    candidates.sort(key=lambda item: item[0])
    judged: dict[tuple[int, str], bool] = {}
    spans = 0
    for end, is_number, text in candidates:
        key = (is_number, text)
        if key not in judged:
            if len(judged) >= MAX_CANDIDATES:
                return None
            verdict = _quick(text, gold)
            if verdict is None and not is_number and spans < MAX_SPANS:
                spans += 1
                verdict = grade_answer(text, gold)
            judged[key] = verdict is True
        if judged[key]:
            return end
    return None


def _quick(candidate: str, gold: str) -> bool | None:
    """The pure-Python verdict on a candidate (None: only math-verify can tell)."""
    candidate = sanitize(candidate) or ""
    if not candidate.strip() or len(candidate) > MAX_ANSWER_CHARS:
        return False
    try:
        return quick_verdict(candidate.strip(), gold)
    except Exception:  # noqa: BLE001 - a hostile gold or candidate must not stop a summary
        return False


# ---------------------------------------------------------------------------------------- summary

def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def first_answer_tokens(record: Mapping[str, Any], count_tokens: CountTokens | None = None) -> int | None:
    """Generated tokens up to the end of the first correct answer of a correct ``record``; None when not found.

    ``count_tokens(text)`` counts the tokens of a prefix of the response (capped at ``total_tokens``);
    without it the position is estimated as ``round(total_tokens * end / len(response))``.

    >>> rec = {"correct": True, "total_tokens": 40, "response": "7 it is. Check: 3+4=7. \\\\boxed{7}", "gold": "7"}
    >>> first_answer_tokens(rec), first_answer_tokens(rec, count_tokens=lambda text: 100 * len(text))
    (1, 40)
    """
    if not record.get("correct"):
        return None
    response, total = record.get("response"), record.get("total_tokens")
    if not isinstance(total, (int, float)) or isinstance(total, bool):
        return None
    end = first_answer_end(response, record.get("gold"))  # type: ignore[arg-type]
    if end is None:
        return None
    if count_tokens is not None:
        return int(min(count_tokens(response[:end]), total))
    return round(total * end / len(response))


def efficiency_summary(records: Sequence[Mapping[str, Any]], *, max_tokens: int,
                       count_tokens: CountTokens | None = None) -> dict[str, Any]:
    """The thinking-efficiency entries of a benchmark's summary (:data:`EFFICIENCY_KEYS`).

    ``acc_at_budget`` (``{str(B): percent}``), ``acc_budget_auc`` (0-100), the mean and median of
    ``first_answer_tokens`` and ``reflection_tail_tokens`` over the correct samples whose first
    answer was found (None when there are none), ``first_answer_found`` (that fraction of the
    correct samples; None without correct samples) and ``first_answer_unit``: ``"tokens"`` when
    ``count_tokens`` counted them, ``"estimated"`` when they come from character positions.

    >>> recs = [{"problem_id": "p", "correct": True, "total_tokens": 10, "response": "4, so 4", "gold": "4"},
    ...         {"problem_id": "p", "correct": False, "total_tokens": 32, "response": "5", "gold": "4"}]
    >>> s = efficiency_summary(recs, max_tokens=32)
    >>> s["acc_at_budget"], s["acc_budget_auc"], s["first_answer_tokens_mean"], s["reflection_tail_tokens_median"]
    ({'4': 0.0, '8': 0.0, '16': 50.0, '32': 50.0}, 25.0, 1.0, 9.0)
    >>> s["first_answer_found"], s["first_answer_unit"]
    (1.0, 'estimated')
    """
    curve = acc_at_budget(records, budget_grid(max_tokens))
    firsts, tails, correct = [], [], 0
    for rec in records:
        if not rec.get("correct"):
            continue
        correct += 1
        first = first_answer_tokens(rec, count_tokens)
        if first is not None:
            firsts.append(float(first))
            tails.append(float(max(0, rec["total_tokens"] - first)))
    return {
        "acc_at_budget": {str(b): acc for b, acc in curve.items()},
        "acc_budget_auc": budget_auc(curve),
        "first_answer_tokens_mean": _mean(firsts),
        "first_answer_tokens_median": _median(firsts),
        "reflection_tail_tokens_mean": _mean(tails),
        "reflection_tail_tokens_median": _median(tails),
        "first_answer_found": len(firsts) / correct if correct else None,
        "first_answer_unit": "tokens" if count_tokens is not None else "estimated",
    }


# ---------------------------------------------------------------------------------------- reading back

@dataclass(frozen=True)
class Efficiency:
    """A benchmark's thinking-efficiency metrics as a summary holds them (None where it lacks one)."""

    acc_at_budget: dict[int, float] = field(default_factory=dict)
    auc: float | None = None
    first_mean: float | None = None
    first_median: float | None = None
    tail_mean: float | None = None
    tail_median: float | None = None
    found: float | None = None
    unit: str | None = None

    @property
    def empty(self) -> bool:
        """True for a summary written before these metrics existed."""
        return not self.acc_at_budget and self.auc is None and self.first_mean is None and self.found is None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_efficiency(entry: Any) -> Efficiency:
    """The efficiency metrics of a summary entry; absent or malformed values are None (never an error).

    >>> e = read_efficiency({"acc_at_budget": {"512": 50.0, "256": "x", "big": 1}, "acc_budget_auc": 40.0})
    >>> e.acc_at_budget, e.auc, e.first_mean, read_efficiency({"acc": 1.0}).empty
    ({512: 50.0}, 40.0, None, True)
    """
    entry = entry if isinstance(entry, dict) else {}
    raw = entry.get("acc_at_budget")
    curve = {}
    for key, value in (raw.items() if isinstance(raw, dict) else ()):
        if str(key).isascii() and str(key).isdigit() and int(key) > 0 and _number(value) is not None:
            curve[int(key)] = float(value)
    unit = entry.get("first_answer_unit")
    return Efficiency(dict(sorted(curve.items())), _number(entry.get("acc_budget_auc")),
                      _number(entry.get("first_answer_tokens_mean")), _number(entry.get("first_answer_tokens_median")),
                      _number(entry.get("reflection_tail_tokens_mean")),
                      _number(entry.get("reflection_tail_tokens_median")), _number(entry.get("first_answer_found")),
                      unit if unit in ("tokens", "estimated") else None)
