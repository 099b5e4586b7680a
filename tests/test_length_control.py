"""The field's length-control baselines: formulas with hand-computed values, their config options and errors, the
TRL callables, the token budgets of L1's prompts and ThinkPrune's cap schedule (CPU, no model).

The training path of each (a real one-step trainer on builtin:tiny) is in tests/test_baselines_training.py.
"""

from __future__ import annotations

import pytest

from egrc_lite.config import ConfigError, EgrcConfig, RewardConfig, StageConfig, validate_config
from egrc_lite.data import DataConfig, Problem, TokenBudget, build_messages, fit_prompt_length, token_budget
from egrc_lite.train import length_control as LC
from egrc_lite.train import rewards as RF
from egrc_lite.train.schedule import stage_caps


# ---------------------------------------------------------------------------- DAPO soft overlong punishment

@pytest.mark.parametrize("length, expected", [
    (0, 0.0), (16384, 0.0),            # up to L_max - L_cache = 20480 - 4096: no penalty
    (16385, -1 / 4096),                # the ramp starts just after it
    (18432, -0.5),                     # halfway through the buffer: (16384 - 18432) / 4096
    (20479, -4095 / 4096), (20480, -1.0),  # the cap itself: -1
    (20481, -1.0), (30000, -1.0),      # beyond the cap: -1
])
def test_dapo_soft_overlong_penalty_paper_setting(length, expected):
    """DAPO's run: L_max = 20480, L_cache = 4096."""
    assert LC.soft_overlong_penalty(length, 20480, 4096) == pytest.approx(expected, abs=1e-12)


def test_dapo_soft_overlong_penalty_is_continuous_and_non_increasing():
    values = [LC.soft_overlong_penalty(n, 100, 20) for n in range(0, 130)]
    assert all(b <= a for a, b in zip(values, values[1:]))
    assert values[80] == 0.0 and values[90] == -0.5 and values[100] == -1.0 and min(values) == -1.0
    assert LC.soft_overlong_penalty(10, 10, 10) == -1.0  # L_cache = L_max: the ramp covers every length
    assert LC.soft_overlong_penalty(5, 10, 10) == -0.5


@pytest.mark.parametrize("args, message", [((5, 10, 0), "must be in \\[1, max_length = 10\\]"),
                                           ((5, 10, 11), "must be in"), ((5, 0, 1), "max_length must be"),
                                           ((-1, 10, 2), "length must be")])
def test_dapo_soft_overlong_penalty_refuses_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        LC.soft_overlong_penalty(*args)


def test_overlong_buffer_tokens_is_a_rounded_fraction_of_the_cap():
    assert LC.overlong_buffer_tokens(0.2, 20480) == 4096
    assert LC.overlong_buffer_tokens(0.2, 24) == 5  # 4.8
    assert LC.overlong_buffer_tokens(0.01, 10) == 1 and LC.overlong_buffer_tokens(1.0, 10) == 10


# ---------------------------------------------------------------------------- L1 / LCPO

@pytest.mark.parametrize("correct, length, budget, expected", [
    (True, 1000, 1000, 1.0),
    (True, 1500, 1000, 1.0 - 0.0003 * 500),      # 0.85
    (True, 500, 1000, 0.85),                      # symmetric: too short costs the same as too long
    (False, 4000, 100, 0.0 - 0.0003 * 3900),      # -1.17
    (False, 100, 100, 0.0),
])
def test_l1_reward_hand_computed(correct, length, budget, expected):
    assert LC.l1_reward(correct, length, budget, 0.0003) == pytest.approx(expected, abs=1e-12)
    assert LC.l1_length_term(length, budget, 0.0003) == pytest.approx(expected - (1.0 if correct else 0.0), abs=1e-12)


def test_l1_alpha_must_not_be_negative():
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        LC.l1_length_term(1, 2, -0.1)


# ---------------------------------------------------------------------------- Kimi k1.5

def test_kimi_length_reward_hand_computed():
    # min 100, max 500: lambda = 0.5, 0.25, 0, -0.25, -0.5 for 100, 200, 300, 400, 500
    lengths = [100, 200, 300, 400, 500, 200]
    correct = [True, True, True, True, True, False]
    assert LC.kimi_length_rewards(lengths, correct) == pytest.approx([0.5, 0.25, 0.0, -0.25, -0.5, 0.0])
    wrong = [False] * 5
    assert LC.kimi_length_rewards(lengths[:5], wrong) == pytest.approx([0.0, 0.0, 0.0, -0.25, -0.5])


def test_kimi_gating_never_rewards_a_short_wrong_answer_and_equal_lengths_give_zero():
    assert LC.kimi_length_rewards([10, 30], [False, True]) == [0.0, -0.5]  # wrong and shortest: 0, not +0.5
    assert LC.kimi_length_rewards([8, 8, 8], [True, False, True]) == [0.0, 0.0, 0.0]
    assert LC.kimi_length_rewards([], []) == []
    with pytest.raises(ValueError, match="2 lengths for 1"):
        LC.kimi_length_rewards([1, 2], [True])


# ---------------------------------------------------------------------------- the TRL callables

@pytest.fixture
def graded(monkeypatch):
    """Grading by a fixed set of correct texts (no math-verify)."""
    from egrc_lite import grading

    right: set[str] = set()
    monkeypatch.setattr(grading, "grade_each", lambda pairs, answer_rule="boxed": [r in right for r, _ in pairs])
    return right


def test_length_term_registry_builds_each_exploration_reward():
    stage = StageConfig(mode="explore", steps=1, length_clip=8)
    names = {term: [f.__name__ for f in RF.build_reward_funcs("explore", RewardConfig(length_term=term), stage,
                                                                group_size=2)]
             for term in RF.LENGTH_TERMS}
    assert names == {"penalty": ["format", "answer", "length"], "none": ["format", "answer"],
                     "dapo_soft": ["format", "answer", "dapo_overlong"], "l1": ["format", "answer", "l1_length"],
                     "kimi": ["format", "answer", "kimi_length"]}
    for term in RF.LENGTH_TERMS:  # the compression stage keeps its own reward whatever the term
        assert [f.__name__ for f in RF.build_reward_funcs("compress", RewardConfig(length_term=term), stage)] == \
            ["compression"]
    [kimi] = RF.build_reward_funcs("explore", RewardConfig(length_term="kimi"), stage)[2:]
    with pytest.raises(ValueError, match="needs the group size"):
        kimi.reward([True], [1])

    class Trainer:
        eos_token_ids, processing_class, num_generations = [2], None, 4

    RF.bind_trainer([kimi], Trainer())  # the trainer's G
    assert kimi.group_size == 4


def test_dapo_callable_uses_the_stage_cap_as_l_max():
    stage = StageConfig(mode="explore", steps=1, length_clip=10)  # cap 20, L_cache 0.2 * 20 = 4
    [fn] = RF.build_reward_funcs("explore", RewardConfig(length_term="dapo_soft", length_weight=2.0), stage)[2:]
    out = fn(completions=["x"] * 4, completion_ids=[[1] * 16, [1] * 17, [1] * 18, [1] * 20])
    assert out == pytest.approx([0.0, -0.5, -1.0, -2.0])  # 2 x (16 - n) / 4


def test_l1_callable_reads_each_prompts_budget(graded):
    funcs = RF.build_reward_funcs("explore", RewardConfig(length_term="l1", l1_alpha=0.01, answer_rule="last_number"),
                                  StageConfig(mode="explore", steps=1, length_clip=50))
    graded.add("so 4")
    batch = dict(prompts=["q"] * 3, completions=["so 4", "so 5", "so 4"], completion_ids=[[1] * 10, [1] * 30, [1] * 60],
                 answer=["4"] * 3, token_budget=[20, 20, 40])
    total = [sum(f(**batch)[i] for f in funcs) for i in range(3)]
    assert total == pytest.approx([1 - 0.01 * 10, 0 - 0.01 * 10, 1 - 0.01 * 20])  # 1[correct] - alpha |N - n|
    with pytest.raises(ValueError, match="needs the dataset column 'token_budget'"):
        funcs[2](**{k: v for k, v in batch.items() if k != "token_budget"})


def test_kimi_callable_groups_by_g_and_gates_by_the_grader(graded):
    fn = RF.KimiLengthReward(RewardConfig(answer_rule="last_number"), group_size=3)
    graded.update({"a 1", "c 1"})
    texts = ["a 1", "b 2", "c 1", "d 1", "e 2", "f 2"]
    ids = [[1] * n for n in (4, 2, 6, 3, 3, 3)]
    out = fn(prompts=["p"] * 3 + ["q"] * 3, completions=texts, completion_ids=ids, answer=["1"] * 6)
    # group 1: min 2, max 6 -> lambda 0, 0.5, -0.5; correct, wrong, correct; group 2: equal lengths -> 0
    assert out == pytest.approx([0.0, 0.0, -0.5, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="do not share their prompt"):
        fn(prompts=["p", "p", "q", "q", "q", "q"], completions=texts, completion_ids=ids, answer=["1"] * 6)
    with pytest.raises(ValueError, match="not whole groups of 3"):
        fn(prompts=["p"] * 4, completions=texts[:4], completion_ids=ids[:4], answer=["1"] * 4)


def test_baseline_callables_pickle_round_trip():
    import pickle

    for term in ("dapo_soft", "l1", "kimi"):
        fn = RF.build_reward_funcs("explore", RewardConfig(length_term=term), StageConfig(mode="explore", steps=1),
                                   group_size=4)[2]
        back = pickle.loads(pickle.dumps(fn))
        assert type(back) is type(fn) and vars(back) == vars(fn)


def test_set_caps_moves_the_unanswered_rule_and_l_max():
    funcs = RF.build_reward_funcs("explore", RewardConfig(length_term="dapo_soft"),
                                  StageConfig(mode="explore", steps=1, length_clip=10))
    RF.set_caps(funcs, 5, 10)
    assert [f.max_completion_length for f in funcs] == [10, 10, 10]
    assert funcs[2](completions=["x"], completion_ids=[[1] * 10]) == [-1.0]  # the new cap is L_max


# ---------------------------------------------------------------------------- L1's budgets in the prompt

def test_budget_sentence_follows_the_suffix():
    data = DataConfig(prompt_suffix="Box it.")
    assert build_messages("1+1?", data, 37)[-1]["content"] == "1+1?\nBox it. Think for 37 tokens."
    assert build_messages("1+1?", data)[-1]["content"] == "1+1?\nBox it."
    own = DataConfig(prompt_suffix="", budget_prompt="Use at most {budget} tokens.")
    assert build_messages("1+1?", own, 5)[-1]["content"] == "1+1?\nUse at most 5 tokens."


def test_budgets_are_drawn_per_problem_from_the_seed_in_range_and_order_free():
    tb = TokenBudget(10, 20, seed=3)
    ids = [f"p{i}" for i in range(200)]
    drawn = [tb.draw(i) for i in ids]
    assert all(10 <= b <= 20 for b in drawn) and len(set(drawn)) == 11  # uniform on the whole range
    assert [tb.draw(i) for i in reversed(ids)] == drawn[::-1]  # no dependence on order (resume, limit)
    assert [TokenBudget(10, 20, seed=4).draw(i) for i in ids] != drawn  # another seed, other budgets


def test_the_run_budget_range_scales_with_the_largest_cap_of_the_stages_that_run():
    cfg = EgrcConfig.model_validate({"reward": {"length_term": "l1", "l1_budget": [0.1, 0.5]}, "train": {"seed": 7},
                                     "schedule": {"stages": [{"mode": "compress", "steps": 0, "length_clip": 400},
                                                             {"mode": "explore", "steps": 2, "length_clip": 50}]}})
    assert token_budget(cfg) == TokenBudget(10, 50, 7)  # explore cap 100; the 0-step compress stage does not count
    assert token_budget(cfg.model_copy(update={"reward": RewardConfig()})) is None


def test_prompt_length_counts_the_budget_sentence():
    probs = [Problem("a", "x" * 10, "1")]
    data = DataConfig(prompt_suffix="", max_prompt_length=25)
    count = lambda m: len(m[-1]["content"])  # noqa: E731
    assert fit_prompt_length(probs, data, count)[1] == 0  # 10 characters
    kept, dropped = fit_prompt_length(probs + [Problem("b", "y", "1")], data, count, TokenBudget(5, 5, 0))
    assert [p.id for p in kept] == ["b"] and dropped == 1  # + "\nThink for 5 tokens.": 30 and 21 characters


# ---------------------------------------------------------------------------- ThinkPrune's cap schedule

def test_cap_schedule_tightens_at_the_given_fractions_of_the_stage():
    stage = StageConfig(mode="explore", steps=9, length_clip=2048,
                        cap_schedule=[{"at": 0.33, "scale": 0.75}, {"at": 0.67, "scale": 0.5}])
    caps = [stage_caps(stage, done) for done in range(9)]
    # round(0.33 * 9) = 3, round(0.67 * 9) = 6: steps 1-3 at 4096, 4-6 at 3072, 7-9 at 2048 (L follows below it)
    assert caps == [(2048, 4096)] * 3 + [(2048, 3072)] * 3 + [(2048, 2048)] * 3
    compress = StageConfig(mode="compress", steps=4, length_clip=100, cap_schedule=[{"at": 0.5, "scale": 0.5}])
    assert [stage_caps(compress, d) for d in range(4)] == [(100, 100)] * 2 + [(50, 50)] * 2
    plain = StageConfig(mode="explore", steps=4, length_clip=8)
    assert {stage_caps(plain, d) for d in range(4)} == {(8, 16)}


# ---------------------------------------------------------------------------- config: one-line errors naming the fix

@pytest.mark.parametrize("data, message", [
    ({"reward": {"length_term": "dapo"}}, "reward.length_term"),
    ({"reward": {"l1_budget": [0.5, 0.1]}}, "reward.l1_budget must be [lo, hi] with 0 < lo <= hi <= 1"),
    ({"reward": {"l1_budget": [0.0, 0.5]}}, "e.g. [0.025, 1.0]"),
    ({"reward": {"overlong_buffer": 0}}, "reward.overlong_buffer"),
    ({"reward": {"overlong_buffer": 1.5}}, "reward.overlong_buffer"),
    ({"data": {"budget_prompt": "Think briefly."}}, "data.budget_prompt must contain {budget}"),
    ({"schedule": {"stages": [{"mode": "explore", "steps": 3, "cap_schedule": [{"at": 0.5, "scale": 0.5},
                                                                                 {"at": 0.7, "scale": 0.75}]}]}},
     "increasing 'at' and decreasing 'scale'"),
    ({"schedule": {"stages": [{"mode": "explore", "steps": 3, "cap_schedule": [{"at": 1.0, "scale": 0.5}]}]}},
     "cap_schedule.0.at"),
    ({"schedule": {"stages": [{"mode": "explore", "steps": 3, "cap_schedule": [{"at": 0.5, "cap": 10}]}]}},
     "unknown config key 'schedule.stages.0.cap_schedule.0.cap'"),
])
def test_bad_values_are_one_line_config_errors(data, message):
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_unknown_length_term_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        validate_config({"reward": {"length_term": "dapo"}})
    assert all(term in str(info.value) for term in RF.LENGTH_TERMS)
