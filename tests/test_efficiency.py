"""Thinking-efficiency metrics (accuracy at token budgets, first-answer position) from hand-built records,
and their place in ``evaluate``'s summary, resumed eval directories included. CPU, no torch, no model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from egrc_lite.evaluation import efficiency as E
from egrc_lite.evaluation.efficiency import (
    EFFICIENCY_KEYS,
    acc_at_budget,
    budget_auc,
    budget_grid,
    efficiency_summary,
    first_answer_end,
    first_answer_tokens,
    read_efficiency,
)
from egrc_lite.evaluation.evaluate import EvalSettings, evaluate, read_summary
from egrc_lite.evaluation.metrics import summarize
from egrc_lite.evaluation.tasks import load_benchmark
from egrc_lite.generate import Sample

MINI = Path(__file__).parent / "assets" / "mini_bench.jsonl"


def _rec(pid: str, correct: bool, tokens: int, response: str = "", gold: str = "12") -> dict:
    return {"problem_id": pid, "correct": correct, "total_tokens": tokens, "response": response, "gold": gold}


# ---------------------------------------------------------------------------------------- budgets

def test_budget_grid_starts_at_256_for_long_caps_and_lower_for_short_ones():
    assert budget_grid(32768) == [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
    assert budget_grid(256) == [32, 64, 128, 256]  # the CPU demo's cap still gets four points
    assert budget_grid(1024) == [128, 256, 512, 1024]
    assert budget_grid(1000) == [64, 128, 256, 512, 1000]  # a cap that is no power of two is the last budget
    assert budget_grid(4096) == [256, 512, 1024, 2048, 4096]
    assert budget_grid(1) == [1] and budget_grid(3) == [1, 2, 3]
    with pytest.raises(ValueError, match="max_tokens"):
        budget_grid(0)


# p: two correct samples, at 300 and 100 tokens; q: one correct cut off at the cap (1024), one wrong at 50.
HAND = [_rec("p", True, 300), _rec("p", True, 100), _rec("q", True, 1024), _rec("q", False, 50)]


def test_acc_at_budget_and_auc_hand_computed():
    s = efficiency_summary(HAND, max_tokens=1024)
    # per problem (p, q): B=128: (1/2, 0); 256: (1/2, 0); 512: (1, 0); 1024: (1, 1/2) -> mean in percent
    assert s["acc_at_budget"] == {"128": 25.0, "256": 25.0, "512": 50.0, "1024": 75.0}
    assert s["acc_at_budget"]["1024"] == summarize(HAND)["acc"]  # the last budget is ACC, truncated sample included
    # trapezoids over log2 B = 7, 8, 9, 10: (25 + 25)/2 + (25 + 50)/2 + (50 + 75)/2 = 125, over a range of 3
    assert s["acc_budget_auc"] == pytest.approx(125 / 3)
    assert set(s) == set(EFFICIENCY_KEYS)


def test_a_sample_finished_exactly_at_a_budget_counts_there():
    curve = acc_at_budget([_rec("a", True, 256), _rec("b", True, 257)], [256, 512])
    assert curve == {256: 50.0, 512: 100.0}


def test_auc_uneven_spacing_and_single_budget():
    # x = log2: 6, 7, 9 -> (0 + 30)/2 * 1 + (30 + 60)/2 * 2 = 105, over 3
    assert budget_auc({64: 0.0, 128: 30.0, 512: 60.0}) == pytest.approx(35.0)
    assert efficiency_summary([_rec("a", True, 1)], max_tokens=1)["acc_budget_auc"] == 100.0
    assert efficiency_summary([_rec("a", False, 1)], max_tokens=1)["acc_budget_auc"] == 0.0


# ---------------------------------------------------------------------------------------- first answer

def test_first_answer_is_the_first_gold_equal_candidate():
    rethought = "12. Wait, let me verify: 3 * 4 = 12. Check again... so 12"
    assert first_answer_end(rethought, "12") == 2  # the first 12, not the re-checks after it
    stated = "First 3 * 4 gives the total, so the answer is 12."
    assert first_answer_end(stated, "12") == stated.index("12.") + 2
    latex = "It is x = 1/2 times 3... so the answer is $\\frac{3}{2}$, done"
    assert first_answer_end(latex, "1.5") == latex.index("$, done") + 1  # the whole $...$ span, graded as 3/2
    boxed = "Try \\boxed{\\frac{1}{3}}? No: twice that, \\boxed{\\frac{2}{3}} and again \\boxed{\\frac{2}{3}}."
    assert first_answer_end(boxed, "2/3") == boxed.index("} and again") + 1  # the first right box, not the wrong one
    assert first_answer_end("so -3 + 5 = 2 and 2-5 = -3", "-3") == 5  # a leading minus is a sign
    assert first_answer_end("x-3 is not it; the value is 3", "-3") is None  # after a letter it is a minus
    assert first_answer_end("The answer is Paris.", "\\text{Paris}") == len("The answer is Paris")
    assert first_answer_end("I think it is seven.", "7") is None
    assert first_answer_end(None, "7") is None and first_answer_end("7", None) is None


def test_first_answer_is_searched_in_the_thinking_too():
    response = "<think>\n3 + 4 = 7\n\nCheck: 7 - 4 = 3. Yes.\n</think>\n\\boxed{7}"
    assert first_answer_end(response, "7") == response.index("7\n") + 1


def test_candidates_are_capped_per_response():
    answer_late = " ".join(str(1000 + i) for i in range(E.MAX_CANDIDATES)) + " 7"
    assert first_answer_end(answer_late, "7") is None  # 501st distinct candidate: not examined
    answer_in_time = " ".join(str(1000 + i) for i in range(E.MAX_CANDIDATES - 1)) + " 7"
    assert first_answer_end(answer_in_time, "7") == len(answer_in_time)
    repeats = " ".join(["1000"] * 2000) + " 7"  # a repeated candidate is judged once
    assert first_answer_end(repeats, "7") == len(repeats)


def test_count_tokens_stub_and_cap():
    rec = {"correct": True, "total_tokens": 9, "response": "abc 12 def ghi", "gold": "12"}
    assert first_answer_tokens(rec, count_tokens=len) == len("abc 12")  # the prefix up to the answer's end
    assert first_answer_tokens(rec, count_tokens=lambda text: 10 ** 6) == 9  # capped at total_tokens
    s = efficiency_summary([{**rec, "problem_id": "p"}], max_tokens=16, count_tokens=len)
    assert (s["first_answer_tokens_mean"], s["reflection_tail_tokens_mean"]) == (6.0, 3.0)
    assert s["first_answer_unit"] == "tokens"
    assert first_answer_tokens({**rec, "correct": False}, count_tokens=len) is None  # only correct samples


def test_estimated_positions_means_and_medians():
    # 100-character responses whose answer ends at characters 25, 50 and 100; 40 tokens each
    responses = ["x" * 23 + " 7" + "y" * 75, "x" * 48 + " 7" + "y" * 50, "x" * 98 + " 7"]
    recs = [_rec(f"p{i}", True, 40, r, "7") for i, r in enumerate(responses)]
    recs.append(_rec("p3", False, 40, "7" * 10, "8"))  # wrong: not counted
    s = efficiency_summary(recs, max_tokens=64)
    assert s["first_answer_unit"] == "estimated" and s["first_answer_found"] == 1.0
    firsts = [10, 20, 40]  # round(40 * end / 100)
    assert s["first_answer_tokens_mean"] == pytest.approx(sum(firsts) / 3) and s["first_answer_tokens_median"] == 20.0
    assert s["reflection_tail_tokens_mean"] == pytest.approx(sum(40 - f for f in firsts) / 3)
    assert s["reflection_tail_tokens_median"] == 20.0


def test_records_without_correct_samples_or_without_a_found_answer():
    wrong = [_rec("p", False, 10, "5", "7"), _rec("q", False, 300, "6", "7")]
    s = efficiency_summary(wrong, max_tokens=256)
    assert s["acc_at_budget"] == {"32": 0.0, "64": 0.0, "128": 0.0, "256": 0.0} and s["acc_budget_auc"] == 0.0
    assert s["first_answer_found"] is None
    assert all(s[k] is None for k in ("first_answer_tokens_mean", "first_answer_tokens_median",
                                      "reflection_tail_tokens_mean", "reflection_tail_tokens_median"))
    # two correct samples, the answer of one stated in words only: left out, found = 1/2
    half = [_rec("p", True, 20, "it is seven", "7"), _rec("p", True, 30, "so 7 then", "7")]
    s = efficiency_summary(half, max_tokens=32)
    assert s["first_answer_found"] == 0.5 and s["first_answer_tokens_mean"] == round(30 * 4 / 9)


def test_read_efficiency_tolerates_old_and_malformed_summaries():
    old = read_efficiency({"acc": 50.0, "len": 100.0})
    assert old.empty and old.acc_at_budget == {} and old.auc is None and old.unit is None
    bad = read_efficiency({"acc_at_budget": [1, 2], "acc_budget_auc": "high", "first_answer_tokens_mean": True,
                           "first_answer_unit": "chars", "first_answer_found": float("nan")})
    assert bad.empty and bad.acc_at_budget == {} and bad.auc is None and bad.unit is None
    good = read_efficiency(efficiency_summary(HAND, max_tokens=1024))
    assert list(good.acc_at_budget) == [128, 256, 512, 1024] and not good.empty


# ---------------------------------------------------------------------------------------- evaluate()

RIGHT = "<think>\nadd 3 and 4\n\nso 7\n</think>\n\\boxed{7}"


class Scripted:
    """The first mini problem right (10 tokens), the rest wrong (20 tokens, cut off); raises when told to."""

    name = "scripted"
    model_source = "scripted:test"

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse

    def generate(self, prompts, *, n, max_tokens, temperature, top_p, seed):
        if self.refuse:
            raise AssertionError("nothing should be generated")
        out = []
        for messages in prompts:
            if messages[-1]["content"].startswith("Ava has 3 apples"):
                out.append([Sample(RIGHT, list(range(10)), False, 8)] * n)
            else:
                out.append([Sample("I think it is 5", list(range(20)), True, 20)] * n)
        return out


class WordTokenizer:
    def encode(self, text, add_special_tokens=False):
        return text.split()


class ScriptedWithTokenizer(Scripted):
    tokenizer = WordTokenizer()


def test_evaluate_adds_efficiency_to_each_benchmark(tmp_path):
    settings = EvalSettings(n=2, max_tokens=20, batch_size=8)
    result = evaluate(Scripted(), [load_benchmark(str(MINI))], tmp_path, settings, model="m")
    entry = result.summary["benchmarks"]["mini_bench"]
    assert entry["acc_at_budget"] == {"2": 0.0, "4": 0.0, "8": 0.0, "16": 25.0, "20": 25.0}  # right answers: 10 tokens
    x20 = math.log2(20)
    assert entry["acc_budget_auc"] == pytest.approx((12.5 + 25 * (x20 - 4)) / (x20 - 1))
    end = RIGHT.index("so 7") + 4  # the first 7, in the thinking
    assert entry["first_answer_unit"] == "estimated" and entry["first_answer_found"] == 1.0
    assert entry["first_answer_tokens_mean"] == round(10 * end / len(RIGHT))
    with_tok = evaluate(ScriptedWithTokenizer(), [load_benchmark(str(MINI))], tmp_path / "tok", settings, model="m")
    entry = with_tok.summary["benchmarks"]["mini_bench"]
    # "<think> add 3 and 4 so 7": 7 words up to the first 7, 3 of the 10 tokens after it
    assert entry["first_answer_unit"] == "tokens"
    assert (entry["first_answer_tokens_median"], entry["reflection_tail_tokens_median"]) == (7.0, 3.0)


def test_rerun_into_an_old_eval_dir_adds_the_metrics_without_generating(tmp_path):
    settings = EvalSettings(n=2, max_tokens=20, batch_size=8)
    bench = load_benchmark(str(MINI))
    evaluate(Scripted(), [bench], tmp_path, settings, model="m")
    summary = json.loads((tmp_path / "summary.json").read_text())
    fresh = dict(summary["benchmarks"]["mini_bench"])
    for key in EFFICIENCY_KEYS:  # as an evaluation made before these metrics existed wrote it
        del summary["benchmarks"]["mini_bench"][key]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    result = evaluate(Scripted(refuse=True), [bench], tmp_path, settings, model="m")
    assert result.generated["mini_bench"] == 0 and result.reused["mini_bench"] == 8
    assert read_summary(tmp_path)["benchmarks"]["mini_bench"] == fresh
