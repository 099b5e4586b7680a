"""Metrics: L-Acc against the paper's Table 1, pass@1, lengths, steps, summarize (CPU, pure)."""

from __future__ import annotations

import pytest

from egrc_lite.evaluation import metrics as M

# Paper Table 1, DeepSeek-R1-Distill-Qwen-1.5B rows: (ACC, LEN, L-Acc) per benchmark.
BENCHES = ["AIME24", "Minerva", "MATH", "GSM8K", "AMC", "OlympiadBench"]
BASE_1P5B_LEN = [16927, 3054, 5485, 1909, 11157, 11236]
TABLE1_1P5B = {
    "AutoThink": [(30.0, 7016, 23.0), (95.5, 959, 79.1), (87.0, 1851, 70.8), (86.4, 743, 67.5),
                  (66.3, 4656, 50.6), (45.2, 5296, 32.8)],
    "AdaptThink": [(33.3, 8492, 23.5), (96.3, 1267, 73.7), (82.0, 2158, 63.9), (83.1, 971, 58.3),
                   (62.6, 4194, 49.5), (44.5, 5291, 32.4)],
    "Thinkless": [(36.7, 8848, 25.3), (95.3, 1178, 74.7), (84.6, 2623, 61.1), (84.5, 637, 69.0),
                  (57.8, 6861, 35.9), (42.5, 6625, 27.2)],
    "ThinkPrune": [(26.7, 8175, 19.2), (96.0, 1403, 70.6), (85.8, 2321, 65.2), (85.0, 907, 61.6),
                   (63.9, 4354, 49.9), (43.0, 4401, 33.5)],
    "Laser": [(40.0, 5635, 32.7), (96.6, 1323, 72.7), (87.0, 2073, 68.6), (86.2, 996, 59.6),
              (65.1, 4963, 48.5), (45.8, 5512, 32.7)],
    "LC-R1": [(23.3, 11124, 13.7), (94.4, 1374, 70.0), (83.6, 2921, 57.2), (80.1, 789, 61.3),
              (60.2, 4778, 45.5), (39.3, 4639, 30.1)],
    "ours": [(36.7, 3634, 32.5), (97.1, 671, 85.7), (87.4, 1180, 77.4), (87.2, 586, 72.6),
             (66.3, 2083, 59.8), (45.3, 2275, 40.5)],
}


@pytest.mark.parametrize("method", sorted(TABLE1_1P5B))
def test_l_acc_reproduces_paper_table1_1p5b(method):
    for bench, base, (acc, length, expected) in zip(BENCHES, BASE_1P5B_LEN, TABLE1_1P5B[method]):
        assert M.l_acc(acc, length, base) == pytest.approx(expected, abs=0.1), (method, bench)


def test_l_acc_edges():
    assert M.l_acc(80.0, 0, 1000) == 80.0
    assert M.l_acc(80.0, 1000, 1000) == 0.0
    assert M.l_acc(80.0, 1500, 1000) == 0.0  # clamped, not NaN
    assert M.l_acc(80.0, 750, 1000) == pytest.approx(40.0)
    with pytest.raises(ValueError):
        M.l_acc(1.0, 1, 0)


def test_pass_at_1_averages_per_problem_first():
    # problem a: 1/4, problem b: 2/2 -> (0.25 + 1) / 2, not 3/6
    assert M.pass_at_1({"a": [True, False, False, False], "b": [True, True]}) == pytest.approx(0.625)
    assert M.pass_at_1([[False], [True]]) == 0.5
    with pytest.raises(ValueError):
        M.pass_at_1({})
    with pytest.raises(ValueError):
        M.pass_at_1({"a": []})


def test_lengths_and_truncation():
    assert M.mean_length([1, 2, 3, 4]) == 2.5
    assert M.mean_length([]) is None
    assert M.truncation_rate([True, True, False, False, False]) == pytest.approx(0.4)
    assert M.truncation_rate([]) == 0.0
    assert M.length_by_correctness([True, False, False], [10, 20, 40]) == (10.0, 30.0)
    assert M.length_by_correctness([False, False], [10, 20]) == (None, 15.0)
    assert M.length_by_correctness([], []) == (None, None)


@pytest.mark.parametrize(
    "response, think, answer",
    [
        ("<think>\nA\n</think>\n\nB", "A", "B"),
        ("A</think>B", "A", "B"),
        ("just text", "just text", ""),
        ("<think>x</think>y</think>z", "x", "y</think>z"),
    ],
)
def test_split_think(response, think, answer):
    assert M.split_think(response) == (think, answer)


@pytest.mark.parametrize(
    "response, steps",
    [
        ("<think>\nLet x = 2.\n\nThen 2x = 4.\n\nWait, check: yes.\n</think>\n\nSo \\boxed{4}\n\nDone.", 3),
        ("one line only</think>answer", 1),
        ("a\nb\nc</think>", 1),  # single newlines do not split paragraphs
        ("a\n   \nb\n\n\n\nc", 3),  # no </think>: whole text; whitespace-only lines count as blank
        ("<think>\n\n</think>x", 0),
        ("", 0),
    ],
)
def test_reasoning_steps(response, steps):
    assert M.reasoning_steps(response) == steps


def _rec(pid, correct, total, think=None, answer=None, truncated=False, steps=None):
    rec = {"problem_id": pid, "correct": correct, "total_tokens": total, "truncated": truncated}
    if think is not None:
        rec.update(think_tokens=think, answer_tokens=answer, steps=steps)
    return rec


def test_summarize_hand_made_records():
    records = [
        _rec("p1", True, 100, 80, 20, steps=2),
        _rec("p1", False, 300, 290, 10, truncated=True, steps=6),
        _rec("p2", True, 50, 40, 10, steps=1),
        _rec("p2", True, 70, 60, 10, steps=3),
    ]
    s = M.summarize(records)
    assert s == {
        "acc": pytest.approx(75.0),  # (1/2 + 2/2) / 2
        "len": pytest.approx(130.0),
        "n_problems": 2,
        "n_samples": 2,
        "truncation_rate": pytest.approx(0.25),
        "len_correct": pytest.approx(220 / 3),
        "len_incorrect": pytest.approx(300.0),
        "think_len": pytest.approx(117.5),
        "answer_len": pytest.approx(12.5),
        "steps": pytest.approx(3.0),
    }


def test_summarize_uneven_samples_and_missing_optional_keys():
    records = [_rec("a", True, 10), _rec("b", False, 20), _rec("b", False, 30), _rec("b", True, 40)]
    s = M.summarize(records)
    assert s["acc"] == pytest.approx(100 * (1.0 + 1 / 3) / 2)
    assert s["n_samples"] == pytest.approx(2.0)  # mean of 1 and 3
    assert s["think_len"] is None and s["answer_len"] is None and s["steps"] is None
    assert s["len_correct"] == 25.0 and s["len_incorrect"] == 25.0


def test_summarize_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one record"):
        M.summarize([])
    with pytest.raises(ValueError, match="record 0 lacks total_tokens"):
        M.summarize([{"problem_id": "a", "correct": True}])
