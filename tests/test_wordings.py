"""The arithmetic generator's wordings: several per operation in training, every answer right, and the
``arithmetic-wording`` benchmark worded in templates, names and items that training never produces.

A problem's skeleton is its text with numbers, names and items masked; a wording's skeleton is its
template with the same masks. Held-out and training skeletons are compared sentence by sentence.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from egrc_lite import data
from egrc_lite.config import DataConfig
from egrc_lite.data import OPERATIONS, TRAIN_ITEMS, TRAIN_NAMES, TRAIN_WORDINGS, Wording, arithmetic_problems
from egrc_lite.evaluation.tasks import (
    ARITHMETIC_WORDING,
    HELDOUT_ITEMS,
    HELDOUT_NAMES,
    HELDOUT_WORDINGS,
    heldout_wordings,
    load_benchmark,
    parse_benchmarks,
    valid_names,
)

RANGES = {"add": ((2, 40), (2, 40)), "sub": ((10, 40), (1, 39)), "mul": ((2, 12), (2, 9))}
FIELDS = {"name": "<name>", "other": "<name>", "item": "<item>", "a": "<n>", "b": "<n>"}
MASKS = [(re.compile(r"\d+"), "<n>"),
         (re.compile(r"\b(" + "|".join(TRAIN_NAMES + HELDOUT_NAMES) + r")\b"), "<name>"),
         (re.compile(r"\b(" + "|".join(TRAIN_ITEMS + HELDOUT_ITEMS) + r")\b"), "<item>")]


def skeleton(text: str) -> str:
    """``text`` with numbers, names and items masked."""
    for pattern, mask in MASKS:
        text = pattern.sub(mask, text)
    return text


def sentences(skel: str) -> set[str]:
    return {s for s in re.split(r"(?<=[.?])\s+", skel) if s}


def wording_skeleton(w: Wording) -> str:
    return w.text.format(**FIELDS)


def wording_regex(w: Wording) -> re.Pattern[str]:
    """A pattern that matches exactly the texts ``w`` renders, capturing its fields."""
    out, seen = "", set()
    for literal, field, _, _ in string.Formatter().parse(w.text):
        out += re.escape(literal)
        if field is None:
            continue
        if field in seen:
            out += f"(?P={field})"
        else:
            seen.add(field)
            out += rf"(?P<{field}>\d+)" if field in ("a", "b") else rf"(?P<{field}>[A-Za-z]+)"
    return re.compile(out)


def parse(problem_text: str, wordings: list[Wording]) -> tuple[Wording, dict[str, str]]:
    """The one wording that renders ``problem_text``, and its fields."""
    hits = [(w, m.groupdict()) for w in wordings if (m := wording_regex(w).fullmatch(problem_text))]
    assert len(hits) == 1, (problem_text, [w.text for w, _ in hits])
    return hits[0]


def check_problems(problems, wordings, names, items):
    """Each problem comes from one of ``wordings``, with ``names``/``items``, operands in range, answer right."""
    used = set()
    for p in problems:
        w, f = parse(p.problem, wordings)
        used.add(w)
        a, b = int(f["a"]), int(f["b"])
        (lo_a, hi_a), (lo_b, hi_b) = RANGES[w.op]
        assert lo_a <= a <= hi_a and lo_b <= b <= hi_b, p
        assert w.op != "sub" or b < a, p
        assert int(p.answer) == {"add": a + b, "sub": a - b, "mul": a * b}[w.op], p
        people = [f[k] for k in ("name", "other") if k in f]
        assert set(people) <= set(names) and len(set(people)) == len(people) and f["item"] in items, p
        assert skeleton(p.problem) == wording_skeleton(w), p
    return used


def test_wordings_are_well_formed_and_several_per_operation():
    for wordings in (TRAIN_WORDINGS, HELDOUT_WORDINGS):
        assert len(set(wordings)) == len(wordings)
        for w in wordings:
            assert w.op in OPERATIONS
            fields = [f for _, f, _, _ in string.Formatter().parse(w.text) if f]
            assert fields.count("a") == 1 and fields.count("b") == 1 and set(fields) <= set(FIELDS), w
            assert "name" in fields or "other" not in fields, w
        counts = {op: sum(w.op == op for w in wordings) for op in OPERATIONS}
        assert min(counts.values()) >= 4, counts
    assert {op: sum(w.op == op for w in TRAIN_WORDINGS) for op in OPERATIONS} == {"add": 5, "sub": 5, "mul": 5}
    assert len(TRAIN_NAMES) == 20 and len(TRAIN_ITEMS) == 14 and len(HELDOUT_WORDINGS) == 12


def test_training_problems_use_every_wording_and_every_answer_is_right():
    problems = arithmetic_problems(1500, seed=1234)
    assert problems == arithmetic_problems(1500, seed=1234) and problems != arithmetic_problems(1500, seed=7)
    used = check_problems(problems, TRAIN_WORDINGS, TRAIN_NAMES, TRAIN_ITEMS)
    assert used == set(TRAIN_WORDINGS)
    ops = [parse(p.problem, TRAIN_WORDINGS)[0].op for p in problems]
    assert all(350 < ops.count(op) < 650 for op in OPERATIONS)  # an even mix, as before


def test_the_held_out_wording_set_is_fixed_and_its_answers_are_right():
    bench = load_benchmark(ARITHMETIC_WORDING)
    assert len(bench.problems) == 200 and bench.problems == heldout_wordings()
    assert [p.id for p in bench.problems[:2]] == ["arith-wording-0", "arith-wording-1"]
    assert bench.name == "arithmetic-wording" and bench.source.startswith("builtin:arithmetic-wording")
    assert load_benchmark("Arithmetic-Wording", limit=5).problems == bench.problems[:5]
    assert check_problems(bench.problems, HELDOUT_WORDINGS, HELDOUT_NAMES, HELDOUT_ITEMS) == set(HELDOUT_WORDINGS)
    assert parse_benchmarks("arithmetic,arithmetic-wording") == ["arithmetic", "arithmetic-wording"]
    assert any(name.startswith("arithmetic-wording (") for name in valid_names())


def test_held_out_wordings_names_and_items_never_occur_in_training():
    train_sentences = set().union(*(sentences(wording_skeleton(w)) for w in TRAIN_WORDINGS))
    held_sentences = set().union(*(sentences(wording_skeleton(w)) for w in HELDOUT_WORDINGS))
    assert not train_sentences & held_sentences, train_sentences & held_sentences
    assert not set(TRAIN_NAMES) & set(HELDOUT_NAMES) and not set(TRAIN_ITEMS) & set(HELDOUT_ITEMS)
    # the problems themselves: no sentence of a held-out problem, masked, is a training sentence
    train = data.load_problems(DataConfig())  # the default preset's training problems
    assert {skeleton(p.problem) for p in train} <= {wording_skeleton(w) for w in TRAIN_WORDINGS}
    for p in heldout_wordings():
        assert not sentences(skeleton(p.problem)) & train_sentences, p
    assert not {p.problem for p in train} & {p.problem for p in heldout_wordings()}
    # the training generator cannot reach the held-out lists: they are not in its module
    source = Path(data.__file__).read_text(encoding="utf-8")
    for w in HELDOUT_WORDINGS:
        assert w.text.split(".")[0] not in source, w
    for word in HELDOUT_NAMES + HELDOUT_ITEMS:
        assert not re.search(rf"\b{word}\b", source), word


def test_the_arithmetic_set_keeps_the_training_wordings():
    problems = load_benchmark("arithmetic").problems
    assert check_problems(problems, TRAIN_WORDINGS, TRAIN_NAMES, TRAIN_ITEMS) == set(TRAIN_WORDINGS)
