"""Tests for egrc_lite.grading (and egrc_lite.grading.text): extraction, equivalence, hostile inputs,
grade_many == grade, the worker pool. CPU only, no network; ~30 s on 2 cores.

Tests that read the benchmark files skip cleanly when ``shared/data`` (or ``$EGRC_DATA_DIR``) is
absent.
"""

from __future__ import annotations

import doctest
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egrc_lite import grading
from egrc_lite.grading import text as normalize
from egrc_lite.grading import extract_answer, extract_last_number, grade, grade_answer, grade_many

DATA_DIR = Path(os.environ.get("EGRC_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
SAFETY_BOUND_S = 3.0  # a safety bound for hostile inputs, not a speed test


def think(tail: str, thought: str = "Let me work through it. Wait, check again: \\boxed{0}.") -> str:
    """A realistic reasoning-model response: thinking (with a decoy box), then the answer."""
    return f"<think>\n{thought}\n</think>\n\n{tail}"


def boxed(answer: str) -> str:
    return think(f"Therefore the final answer is $\\boxed{{{answer}}}$.")


@pytest.fixture(scope="module", autouse=True)
def _stop_pool():
    yield
    grading.shutdown_pool()


# ------------------------------------------------------------------------------------------------
# the equivalence table: (answer the model boxed, gold, expected)
# ------------------------------------------------------------------------------------------------
EQUIVALENCE = [
    # integers, leading zeros, thousands separators, decimals written for integers
    ("033", "33", True), ("27.0", "27", True), ("1,296", "1296", True), ("240", "204", False),
    ("70,000", "70000", True), ("7000", "70000", False), ("3", "4", False), ("+2", "2", True),
    ("10080", r"10,\!080", True), ("11111111100", r"11,\! 111,\! 111,\! 100", True),
    # fractions vs decimals, \dfrac / \tfrac / short forms, mixed numbers
    (r"\dfrac{14}{3}", r"\frac{14}{3}", True), (r"\tfrac{14}{3}", r"\frac{14}{3}", True),
    ("4.6667", r"\frac{14}{3}", False), ("0.5", r"\frac12", True), (r"\frac95", r"1\frac{4}{5}", True),
    (r"4\frac{2}{3}", r"\frac{14}{3}", True), ("137.5", r"137 \frac{1}{2}", True), ("0.0536", r"\frac{3}{56}", False),
    ("1.5", "1.50", True), ("0.1", "0.10", True), (r"6.72\times10^{-5}", ".0000672", True),
    # units, degrees, percent, dollars, \text{...}
    ("90", r"90^\circ", True), (r"90^{\circ}", "90", True), (r"\frac{270}{7}", r"\frac{270}7\text{ degrees}", True),
    ("864", r"864 \mbox{ inches}^2", True), ("32348", r"\$32,\!348", True), ("18.9", r"\$18.90", True),
    (r"\$18", "18", True), (r"18 \text{ dollars}", "18", True), ("36", r"\$36", True),
    ("62.5", "62.5%", True), (r"50\%", "50", True), ("0.08", r"8 \%", True), ("0.8", r"8 \%", False),
    ("Evelyn", r"\text{Evelyn}", True), ("Emily", r"\text{Evelyn}", False),
    ("C", r"\text{(C)}", True), (r"\textbf{(D)}", r"\text{(C)}", False),
    # scientific notation (minerva golds are e-notation)
    (r"3.83 \times 10^{35}", "3.83e35", True), (r"3.83\cdot10^{35}", "3.83e35", True),
    (r"3.8 \times 10^{35}", "3.83e35", False), (r"4.5\cdot10^{33}\text{ erg}", "4.5e33", True),
    ("10^{-5}", "1e-5", True), (r"2.7778\times10^{-6}", "2.7778e-6", True), ("2.8e-6", "2.7778e-6", False),
    ("14903", "1.4903e4", True),
    # minerva's code-style golds, read without eval
    (r"\arcsin(10/13)", "np.arcsin(10/13)", True), ("0.8776", "np.arcsin(10/13)", True),
    ("0.9", "np.arcsin(10/13)", False), (r"-\frac13", "-1./3", True), ("-1.5", "-3./2", True), ("1.5", "-3./2", False),
    # equations and assignments
    ("5", "x=5", True), ("x = 5", "5", True), ("2x+3", "y = 2x + 3", True), ("3x+2", "y = 2x + 3", False),
    ("2x", "f(x)=2 x", True), ("1", "k=1", True), ("2", "k=1", False),
    ("5x-7y+11z+4=0", "5x - 7y + 11z + 4 = 0", True),
    # tuples (ordered), intervals (brackets matter), sets and lists (unordered)
    (r"(3, \frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)", True), ("(1,2)", "(2,1)", False),
    ("(3,4)", "(3,4]", False), ("(3, 4]", "(3,4]", True), ("[1,2)", "[1,2]", False),
    (r"(2, \infty)", r"(2,\infty)", True), (r"[2,\infty)", r"(2,\infty)", False), ("[-2,7]", r"x \in [-2,7]", True),
    (r"(0,36)\setminus\{9\}", r"(0,9) \cup (9,36)", True), (r"(-\infty,0)\cup\{1\}", r"(-\infty, 0) \cup\{1\}$.", True),
    ("-2, 1", "1,-2", True), ("1, 2", "1,-2", False), (r"\{1, 3, 5\}", "1,3,5", True), ("84, 69", "69$,$84", True),
    (r"-2, 1+\sqrt5, 1-\sqrt5", r"\{1\pm\sqrt{5},-2\}", True),
    ("(4,5,7), (1,8,19), (2,7,13)", "(1,8,19), (2,7,13), (4,5,7)", True),
    ("(1,8,19), (2,7,13)", "(1,8,19), (2,7,13), (4,5,7)", False),
    ("(19,8,1), (2,7,13), (4,5,7)", "(1,8,19), (2,7,13), (4,5,7)", False),
    ("f(x)=2-x, f(x)=x", "f(x)=x$,$f(x)=2-x", True),
    # matrices
    (r"\begin{pmatrix} -\frac{1}{3} \\ \frac{2}{3} \\ \frac{5}{3} \end{pmatrix}",
     r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", True),
    (r"\begin{pmatrix} -\frac{1}{3} \\ \frac{2}{3} \\ \frac{4}{3} \end{pmatrix}",
     r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", False),
    # symbolic expressions, radicals, complex numbers
    ("p-q", "p - q", True), ("q-p", "p - q", False), (r"\sqrt{117}", r"3\sqrt{13}", True),
    (r"2\sqrt{2}", r"\sqrt{8}", True), (r"\frac{\sqrt2}{2}", r"\frac{1}{\sqrt{2}}", True),
    (r"\frac{\sqrt3}{2}", r"\frac{1}{\sqrt{2}}", False), (r"x^2+2x+1", r"(x+1)^2", True),
    (r"x^2+2x", r"(x+1)^2", False),
    ("6-5i", "6 - 5i", True), ("6+5i", "6 - 5i", False), (r"\frac{(2n)!}{(n!)^2}", r"\binom{2n}{n}", True),
    (r"\frac{x}{2}-\frac14+ce^{-2x}", r"x / 2-1 / 4+c e^{-2 x}", True),
    (r"\frac{x}{2}+\frac14+ce^{-2x}", r"x / 2-1 / 4+c e^{-2 x}", False),
    (r"\frac{\cos(2t)}{15}", r"\frac{\cos (2 t)}{15}", True), (r"\frac{\sin(2t)}{15}", r"\frac{\cos (2 t)}{15}", False),
    (r"\pi", "3.14159", True), ("3.14", r"\pi", False), ("2^{1009}", "2^{1009}", True), ("2^{1008}", "2^{1009}", False),
]


@pytest.mark.parametrize("pred,gold,expected", EQUIVALENCE,
                         ids=[f"{i:02d}:{p[:20]}|{g[:20]}" for i, (p, g, _) in enumerate(EQUIVALENCE)])
def test_grade_equivalence_table(pred, gold, expected):
    assert grade(boxed(pred), gold) is expected
    assert grade_answer(pred, gold) is expected


# ------------------------------------------------------------------------------------------------
# one realistic response per answer style of each benchmark file, with real golds
# ------------------------------------------------------------------------------------------------
BENCH = [
    ("aime24", "204", think(r"The minimum is achieved at $s = 3$, so the total is $\boxed{204}$."), True),
    ("aime24", "33", think(r"Thus $m+n = \boxed{033}$."), True),
    ("aime24", "371", think(r"So the answer is $\boxed{317}$."), False),
    ("amc23", "3159", think(r"Adding up gives \[\boxed{3{,}159}\]"), True),
    ("amc23", "-1", think(r"The product of the roots is $\boxed{-1}$."), True),
    ("amc83", "1296", think(r"Hence there are $\boxed{1296}$ ways."), True),
    ("amc83", "-4", think(r"So $a = \boxed{4}$."), False),
    ("math500", r"\left( 3, \frac{\pi}{2} \right)", think(r"In polar: $\boxed{(3, \tfrac{\pi}{2})}$."), True),
    ("math500", r"\text{Evelyn}", think(r"Evelyn has the greatest average speed: $\boxed{\text{Evelyn}}$"), True),
    ("math500", r"90^\circ", think(r"The angle is $\boxed{90}$ degrees."), True),
    ("math500", r"\frac{14}{3}", think(r"We get $x = \boxed{\dfrac{14}{3}}$."), True),
    ("math500", r"10,\!080", think(r"There are $\boxed{10080}$ arrangements."), True),
    ("math500", r"(3,4]", think(r"The solution set is $\boxed{(3,4)}$."), False),
    ("math500", r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}",
     think(r"$\boxed{\begin{pmatrix} -\frac{1}{3} \\ \frac{2}{3} \\ \frac{5}{3} \end{pmatrix}}$"), True),
    ("math500", r"\$32,\!348", think(r"She will have $\boxed{\$32,348}$."), True),
    ("minerva", "3.83e35", think(r"$L = \boxed{3.83 \times 10^{35}}\ \text{erg/s}$"), True),
    ("minerva", "4.5e33", think(r"The luminosity is $\boxed{4.5\cdot10^{33}\text{ erg}\,\text{s}^{-1}}$."), True),
    ("minerva", "np.arcsin(10/13)", think(r"$\theta = \boxed{\arcsin\left(\frac{10}{13}\right)}$"), True),
    ("minerva", "-1./3", think(r"The exponent is $\boxed{-\frac{1}{3}}$."), True),
    ("minerva", "3.83e35", think(r"$L = \boxed{3.9 \times 10^{35}}$"), False),
    ("olympiadbench", "(1,8,19), (2,7,13), (4,5,7)", think(r"Triples: $\boxed{(2,7,13),(4,5,7),(1,8,19)}$."), True),
    ("olympiadbench", "69$,$84", think(r"The values are $\boxed{84, 69}$."), True),
    ("olympiadbench", "f(x)=2 x", think(r"So $\boxed{f(x) = 2x}$ for all $x$."), True),
    ("olympiadbench", "62.5%", think(r"The probability is $\boxed{62.5\%}$."), True),
    ("olympiadbench", "1,3,5", think(r"$n \in \boxed{\{1, 3, 5\}}$"), True),
    ("olympiadbench", "1,3,5", think(r"$\boxed{1, 3}$"), False),
    ("gsm8k", "18", think(r"Janet makes $\boxed{\$18}$ every day."), True),
    ("gsm8k", "70000", think(r"His profit is $\boxed{70,000}$ dollars."), True),
    ("gsm8k", "540", think(r"He runs $\boxed{450}$ meters."), False),
]


@pytest.mark.parametrize("name,gold,response,expected", BENCH, ids=[f"{b[0]}-{i}" for i, b in enumerate(BENCH)])
def test_benchmark_styles(name, gold, response, expected):
    assert grade(response, gold) is expected


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"benchmark data not found at {DATA_DIR}")
def test_benchmark_style_golds_are_real():
    for name in sorted({b[0] for b in BENCH}):
        golds = {json.loads(line)["answer"] for line in (DATA_DIR / f"{name}.jsonl").open(encoding="utf-8")}
        missing = [g for n, g, _, _ in BENCH if n == name and g not in golds]
        assert not missing, f"{name}: {missing}"


def _all_golds():
    out = []
    for name in ["aime24", "amc23", "amc83", "math500", "minerva", "olympiadbench", "gsm8k"]:
        path = DATA_DIR / f"{name}.jsonl"
        if path.is_file():
            out += [(name, json.loads(line)["answer"]) for line in path.open(encoding="utf-8") if line.strip()]
    return out


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"benchmark data not found at {DATA_DIR}")
def test_every_gold_accepts_itself_and_integers_reject_neighbours():
    golds = _all_golds()
    assert len(golds) > 2000
    verdicts = grade_many([(boxed(g), g) for _, g in golds])
    assert [g for (_, g), ok in zip(golds, verdicts, strict=True) if not ok] == []
    ints = [g for _, g in golds if re.fullmatch(r"-?\d+", g)]
    assert not any(grade_many([(boxed(str(int(g) + 1)), g) for g in ints]))


# ------------------------------------------------------------------------------------------------
# extraction
# ------------------------------------------------------------------------------------------------
EXTRACT = [
    ("The answer is \\boxed{5}.", "5"),  # no </think>: the whole text
    ("<think>so \\boxed{5}</think> I am not sure.", None),  # box only inside the thinking
    ("<think>\\boxed{1}</think>\\boxed{2}", "2"),
    ("<think>a</think> b </think> \\boxed{3} </think> no box here", None),  # the last </think> counts
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested braces
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces are not structure
    ("\\fbox{7}", "7"),
    ("$\\boxed 5$.", "5"),
    ("\\boxed {  12 }", "12"),
    ("first \\boxed{1}, then \\boxed{2}", "2"),
    ("\\boxed{\\boxed{3}}", "3"),
    ("\\boxed{1} and then \\boxed{2", "1"),  # an unclosed box is skipped
    ("\\boxed{3", None),
    ("within \\boxed{}", None),
    ("\\boxedfoo{3}", None),
    ("\\boxed{a \\text{ or } \\boxed{b}} \\boxed{c}", "c"),
    ("", None),
]


@pytest.mark.parametrize("response,expected", EXTRACT)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


LAST_NUMBER = [
    ("<think>7</think> She has 1,234 apples.", "1234"),
    ("It is -5 degrees.", "-5"),
    ("pi is about 3.14.", "3.14"),
    ("x-5", "5"),
    ("then 2-3 = -1", "-1"),
    ("roughly .5 of it", "0.5"),
    ("<think>42</think> no number", None),
    ("no digits at all", None),
    ("$1,000,000 and 12,34", "34"),
]


@pytest.mark.parametrize("response,expected", LAST_NUMBER)
def test_extract_last_number(response, expected):
    assert extract_last_number(response) == expected


def test_last_number_rule():
    assert grade("<think>try 12</think> So she pays 18 dollars.", "18", answer_rule="last_number")
    assert not grade("<think>18</think> So she pays 17 dollars.", "18", answer_rule="last_number")
    assert grade("I think it's 1,296.", "1296", answer_rule="last_number")
    assert grade("The answer is \\boxed{18}", "18", answer_rule="boxed")


def test_unknown_answer_rule_lists_the_valid_ones():
    with pytest.raises(ValueError, match="boxed, last_number"):
        grade("\\boxed{1}", "1", answer_rule="first_number")
    with pytest.raises(ValueError, match="boxed, last_number"):
        grade_many([("\\boxed{1}", "1")], answer_rule="nope")


# ------------------------------------------------------------------------------------------------
# hostile inputs: False, bounded, no log floods
# ------------------------------------------------------------------------------------------------
NEST = "{" * 100_000 + "}" * 100_000
HOSTILE = [
    ("deep-nesting-boxed", "\\boxed{" + NEST + "}", "1"),
    ("deep-nesting-plain", NEST, "1"),
    ("moderate-nesting", "\\boxed{" + "(" * 30 + "1" + ")" * 30 + "}", "1"),
    ("tower-10", "\\boxed{10^{10^{10^{10}}}}", "10"),
    ("tower-2", "\\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}", "2"),
    ("tower-unbraced", "\\boxed{9^9^9^9}", "9"),
    ("power-of-power", "\\boxed{(9999^{9999})^{9999}}", "1"),
    ("e-tower", "\\boxed{e^{10^{10^{10}}}}", "1"),
    ("factorial", "\\boxed{(10^{10})!}", "1"),
    ("factorial-literal", "\\boxed{99999999!}", "1"),
    ("factorial-chain", "\\boxed{3!!!!!!}", "1"),
    ("binomial", "\\boxed{\\binom{10^{9}}{10^{8}}}", "1"),
    ("long-answer", "\\boxed{" + "9" * 200_000 + "}", "9"),
    ("long-sum", "\\boxed{" + "x+" * 100_000 + "1}", "1"),
    ("nul-bytes", "\x00\\boxed{\x00}" * 1000, "0"),
    ("lone-surrogates", "\ud800\\boxed{\udfff}", "1"),
    ("invalid-utf8", b"\xff\xfe\\boxed{\xc3\x28}", "1"),
    ("slow-integral", "\\boxed{\\int_0^{\\infty} e^{-x^2} \\sin(x^{99}) dx}", "1"),
    ("unclosed-boxes", "\\boxed{" * 50_000, "1"),
    ("nested-fractions", "\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}", "0"),
    ("huge-e-notation", "\\boxed{1e999999999}", "1"),
    ("not-text", 12345, "1"),
    ("none", None, "1"),
]


@pytest.mark.parametrize("name,response,gold", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_false_and_bounded(name, response, gold):
    t0 = time.perf_counter()
    verdict = grade(response, gold)
    elapsed = time.perf_counter() - t0
    assert verdict is False
    assert elapsed < SAFETY_BOUND_S, f"{name} took {elapsed:.2f} s"


def test_hostile_gold_and_answer_strings_do_not_raise():
    for pred, gold in [("1", "\x00" * 10), ("\ud800", "1"), ("1", None), (None, "1"), ("9" * 5000, "9" * 5000)]:
        assert grade_answer(pred, gold) in (True, False)


def test_hostile_inputs_do_not_flood_the_log(caplog):
    caplog.set_level(logging.DEBUG)
    unparseable = "\\boxed{" + "\\nosuchmacro " * 70 + "}"  # math-verify logs the whole input on errors
    for _, response, gold in HOSTILE + [("unparseable", unparseable, "1")]:
        grade(response, gold)
    assert caplog.records, "expected some log records"
    longest = max(len(record.getMessage()) for record in caplog.records)
    assert longest < 300, f"a log record of {longest} characters"
    assert all(record.exc_info is None for record in caplog.records if record.name.startswith("math_verify"))


def test_math_verify_whole_input_log_lines_are_cut(caplog):
    caplog.set_level(logging.DEBUG)
    assert grade(boxed("x+1"), "1+x")  # loads math-verify and its log filter
    huge = "\\frac{1}{2}" * 20_000
    logging.getLogger("math_verify.parser").warning("Timeout during parsing: %s", huge)
    logging.getLogger("math_verify.grader").debug(f"Error parsing: {huge}", exc_info=ValueError(huge))
    mv = [r for r in caplog.records if r.name.startswith("math_verify")]
    assert len(mv) == 2 and all(len(r.getMessage()) < 300 and r.exc_info is None for r in mv)


# ------------------------------------------------------------------------------------------------
# grade_many
# ------------------------------------------------------------------------------------------------
def _mixed_pairs():
    base = [(boxed(p), g) for p, g, _ in EQUIVALENCE[::3]]
    hostile = [(r, g) for name, r, g in HOSTILE if name not in ("deep-nesting-plain", "long-sum")]
    return base + base[:10] + hostile[:8] + base[5:15] + [(boxed("1"), "1")] * 5 + [("no answer", "1")]


def test_grade_many_equals_grade_with_duplicates_and_hostile_entries():
    pairs = _mixed_pairs()
    assert grade_many(pairs) == [grade(r, g) for r, g in pairs]
    assert grade_many([]) == []
    assert grade_many(iter([(boxed("2"), "2")])) == [True]


def test_grade_each_never_raises_and_keeps_every_verdict_it_can(monkeypatch):
    """The one grade-with-fallback of evaluation, analysis and rewards."""
    pairs = [(boxed("2"), "2"), (boxed("boom"), "1"), (boxed("3"), "4")]
    assert grading.grade_each(pairs) == [True, False, False]

    def broken_batch(*args, **kwargs):
        raise RuntimeError("batch")

    real_grade = grading.grade

    def grade_or_explode(response, gold, **kwargs):
        if "boom" in response:
            raise RuntimeError("one")
        return real_grade(response, gold, **kwargs)

    monkeypatch.setattr(grading, "grade_many", broken_batch)
    monkeypatch.setattr(grading, "grade", grade_or_explode)
    assert grading.grade_each(iter(pairs)) == [True, False, False]
    with pytest.raises(ValueError, match="answer_rule"):
        grading.grade_each(pairs, answer_rule="nope")


@pytest.mark.slow
def test_grade_many_on_the_pool_equals_grade(monkeypatch):
    monkeypatch.setattr(grading, "SMALL_BATCH", 0)
    grading.warm_pool(2)  # ready workers: the parent does not grade items itself
    grading._CACHE.clear()
    pairs = _mixed_pairs()
    assert grade_many(pairs, workers=2) == [grade(r, g) for r, g in pairs]


@pytest.mark.slow
def test_pool_kills_a_stuck_worker_and_keeps_going(monkeypatch, caplog):
    monkeypatch.setattr(grading, "SMALL_BATCH", 0)
    monkeypatch.setattr(grading, "COLD_POOL_MIN", 0)
    grading.warm_pool(1)  # a ready worker (untimed)
    monkeypatch.setattr(grading, "HARD_DEADLINE_S", 0.4)  # below the worker's own sympy budget
    slow = (boxed(r"\int_0^{\infty} e^{-x^2} \sin(x^{99}) dx"), "1")
    t0 = time.perf_counter()
    verdicts = grade_many([slow, (boxed(r"\frac{x}{2}"), r"\frac{1}{2}x")], workers=1)
    assert verdicts == [False, True]
    assert time.perf_counter() - t0 < 30
    assert any("killed" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_grade_off_the_main_thread_is_bounded():
    out = {}

    def work():
        out["warm"] = grade(boxed(r"\frac{y}{2}"), r"\frac{1}{2}y")  # starts a worker
        t0 = time.perf_counter()
        out["slow"] = grade(boxed(r"\int_0^{\infty} e^{-x^2} \sin(x^{97}) dx"), "1")
        out["elapsed"] = time.perf_counter() - t0
        out["ok"] = grade(boxed(r"(x+1)^2"), r"x^2+2x+1")

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(60)
    assert out == {"warm": True, "slow": False, "elapsed": out.get("elapsed"), "ok": True}
    assert out["elapsed"] < SAFETY_BOUND_S + 1


# ------------------------------------------------------------------------------------------------
# properties, docs, import weight
# ------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6))
def test_integers_equal_iff_equal(a, b):
    assert grade(boxed(f"{a:,}"), str(b)) is (a == b)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 999), st.sampled_from([2, 4, 5, 8, 10, 16, 20, 25]))
def test_terminating_fraction_equals_its_decimal(num, den):
    decimal = f"{num / den:.10g}"
    assert grade(boxed(decimal), f"\\frac{{{num}}}{{{den}}}")
    assert not grade(boxed(f"{num / den + 0.01:.10g}"), f"\\frac{{{num}}}{{{den}}}")


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text):
    assert grade(text, "1") in (True, False)
    assert grade(text, "1", answer_rule="last_number") in (True, False)


@pytest.mark.parametrize("module", [grading, normalize])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_import_is_light():
    code = ("import sys, egrc_lite.grading; "
            "print(sorted(m for m in ('sympy', 'math_verify', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
