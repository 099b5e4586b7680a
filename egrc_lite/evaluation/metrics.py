"""Evaluation metrics (method.md s6): Pass@1, LEN, L-Acc, truncation, think/answer split, steps.

Pure Python, no torch. Accuracies here are fractions in ``[0, 1]`` except :func:`summarize`'s
``acc``, which is a percentage like the paper's tables; :func:`l_acc` works in whatever unit
``acc`` is given in.

>>> round(l_acc(36.7, 3634, 16927), 1)  # the paper's 1.5B AIME24 row
32.5
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


def l_acc(acc: float, length: float, base_length: float) -> float:
    """Length-aware accuracy ``L-Acc = ACC * sqrt(1 - LEN / LEN_base)``, 0 when ``LEN >= LEN_base``.

    >>> l_acc(87.4, 1180, 5485) > 77.4 - 0.1, l_acc(50.0, 6000, 5485)
    (True, 0.0)
    """
    if base_length <= 0:
        raise ValueError(f"base length must be > 0, got {base_length}")
    return acc * math.sqrt(max(0.0, 1.0 - length / base_length))


def pass_at_1(correct_by_problem: Mapping[Any, Sequence[bool]] | Iterable[Sequence[bool]]) -> float:
    """Pass@1 averaged over the n samples of each problem, then over problems (a fraction).

    ``pass@1 = (1/P) sum_p (1/n_p) sum_i correct_{p,i}``

    >>> pass_at_1({"a": [True, False], "b": [True, True]})
    0.75
    """
    groups = list(correct_by_problem.values() if isinstance(correct_by_problem, Mapping) else correct_by_problem)
    if not groups:
        raise ValueError("pass_at_1 needs at least one problem")
    per_problem = []
    for samples in groups:
        samples = list(samples)
        if not samples:
            raise ValueError("every problem needs at least one sample")
        per_problem.append(sum(bool(c) for c in samples) / len(samples))
    return sum(per_problem) / len(per_problem)


def mean_length(lengths: Iterable[float]) -> float | None:
    """Mean of ``lengths``; ``None`` when there are none.

    >>> mean_length([10, 20]), mean_length([])
    (15.0, None)
    """
    values = [float(x) for x in lengths]
    return sum(values) / len(values) if values else None


def truncation_rate(truncated: Iterable[bool]) -> float:
    """Fraction of responses cut off by the generation cap (0.0 for no responses).

    >>> truncation_rate([True, False, False, False])
    0.25
    """
    flags = [bool(t) for t in truncated]
    return sum(flags) / len(flags) if flags else 0.0


def length_by_correctness(correct: Sequence[bool], lengths: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean length of correct and of incorrect responses; ``None`` for an empty side.

    >>> length_by_correctness([True, False, True], [10, 100, 20])
    (15.0, 100.0)
    >>> length_by_correctness([True], [10])
    (10.0, None)
    """
    if len(correct) != len(lengths):
        raise ValueError(f"{len(correct)} correctness flags for {len(lengths)} lengths")
    right = mean_length(n for ok, n in zip(correct, lengths) if ok)
    wrong = mean_length(n for ok, n in zip(correct, lengths) if not ok)
    return right, wrong


def split_think(response: str) -> tuple[str, str]:
    """``(think, answer)``: the text before the first ``</think>`` (a leading ``<think>`` removed)
    and the text after it, both stripped. Without ``</think>`` the whole text is the think part.

    >>> split_think("<think>\\nstep 1\\n</think>\\nso \\\\boxed{2}")
    ('step 1', 'so \\\\boxed{2}')
    >>> split_think("no tags")
    ('no tags', '')
    """
    think, sep, answer = response.partition(_THINK_CLOSE)
    think = think.strip()
    if think.startswith(_THINK_OPEN):
        think = think[len(_THINK_OPEN):].strip()
    return think, (answer.strip() if sep else "")


def reasoning_steps(response: str) -> int:
    """Reasoning steps = non-empty paragraphs (blocks split by blank lines) of the think part.

    >>> reasoning_steps("<think>First.\\n\\nWait, check.\\n\\n\\nDone.</think>\\n\\n\\\\boxed{1}")
    3
    >>> reasoning_steps("</think>\\\\boxed{1}")
    0
    """
    think, _ = split_think(response)
    return sum(1 for block in _PARAGRAPH_BREAK.split(think) if block.strip())


_REQUIRED = ("problem_id", "correct", "total_tokens")


def _mean_of(records: Sequence[Mapping[str, Any]], key: str) -> float | None:
    return mean_length(r[key] for r in records if r.get(key) is not None)


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Benchmark summary from per-sample records.

    Each record has ``problem_id``, ``correct``, ``total_tokens`` and optionally
    ``think_tokens``, ``answer_tokens``, ``truncated``, ``steps``. Returns ``acc`` (Pass@1 in
    percent), ``len`` (mean ``total_tokens`` per response), ``n_problems``, ``n_samples``
    (samples per problem: an int when equal for all problems, else their mean),
    ``truncation_rate`` (fraction; a missing flag counts as not truncated), ``len_correct``,
    ``len_incorrect``, ``think_len``, ``answer_len``, ``steps`` (means over the records that
    carry the key; ``None`` when none does).

    >>> recs = [{"problem_id": "p", "correct": True, "total_tokens": 10},
    ...         {"problem_id": "p", "correct": False, "total_tokens": 30, "truncated": True}]
    >>> s = summarize(recs)
    >>> s["acc"], s["len"], s["n_samples"], s["truncation_rate"], s["len_incorrect"], s["steps"]
    (50.0, 20.0, 2, 0.5, 30.0, None)
    """
    if not records:
        raise ValueError("summarize needs at least one record")
    by_problem: dict[Any, list[bool]] = {}
    for i, rec in enumerate(records):
        missing = [k for k in _REQUIRED if k not in rec]
        if missing:
            raise ValueError(f"record {i} lacks {', '.join(missing)}; required keys: {', '.join(_REQUIRED)}")
        by_problem.setdefault(rec["problem_id"], []).append(bool(rec["correct"]))
    counts = [len(v) for v in by_problem.values()]
    n_samples: float = counts[0] if len(set(counts)) == 1 else sum(counts) / len(counts)
    len_correct, len_incorrect = length_by_correctness(
        [bool(r["correct"]) for r in records], [r["total_tokens"] for r in records]
    )
    return {
        "acc": 100.0 * pass_at_1(by_problem),
        "len": _mean_of(records, "total_tokens"),
        "n_problems": len(by_problem),
        "n_samples": n_samples,
        "truncation_rate": truncation_rate(r.get("truncated", False) for r in records),
        "len_correct": len_correct,
        "len_incorrect": len_incorrect,
        "think_len": _mean_of(records, "think_tokens"),
        "answer_len": _mean_of(records, "answer_tokens"),
        "steps": _mean_of(records, "steps"),
    }
