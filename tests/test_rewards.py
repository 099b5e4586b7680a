"""Rewards: shaping formulas, clipping, format, length penalty, TRL callables (CPU, no model)."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import egrc_lite
from egrc_lite.train import rewards as RF
from egrc_lite.train import reward_formulas as R
from egrc_lite.config import RewardConfig, StageConfig

KINDS = ["exponential", "linear", "cosine"]

clips = st.integers(min_value=1, max_value=100_000)
rs = st.floats(min_value=1e-6, max_value=1 - 1e-6)


# ---------------------------------------------------------------------------- shaping properties


# shape_length clamps f to [r, 1], which would make endpoint and bound checks on it true for any formula
# (a too-steep lambda reaches r before L and is then held there). So these check the formulas themselves
# (R.SHAPES, no clamp), and that the clamp only ever corrects rounding.
TOL = 1e-12


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), clip=clips, r=rs)
def test_shape_endpoints(kind, clip, r):
    raw = R.SHAPES[kind]
    assert raw(0.0, clip, r) == pytest.approx(1.0, abs=TOL)
    assert raw(float(clip), clip, r) == pytest.approx(r, abs=TOL)
    assert R.shape_length(kind, 0, clip, r) == pytest.approx(1.0, abs=TOL)
    assert R.shape_length(kind, clip, clip, r) == pytest.approx(r, abs=TOL)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), clip=clips, r=rs, data=st.data())
def test_shape_monotone_and_bounded(kind, clip, r, data):
    a = data.draw(st.integers(min_value=0, max_value=clip))
    b = data.draw(st.integers(min_value=a, max_value=clip))
    fa, fb = R.SHAPES[kind](float(a), clip, r), R.SHAPES[kind](float(b), clip, r)
    assert r - TOL <= fb <= fa + TOL and fa <= 1.0 + TOL
    assert R.shape_length(kind, a, clip, r) == pytest.approx(fa, abs=TOL)  # the clamp only guards rounding
    assert r <= R.shape_length(kind, b, clip, r) <= R.shape_length(kind, a, clip, r) <= 1.0


@settings(max_examples=50, deadline=None)
@given(kind=st.sampled_from(KINDS), clip=clips, r=rs, extra=st.integers(min_value=1, max_value=10**6))
def test_shape_beyond_clip_stays_at_r(kind, clip, r, extra):
    assert R.shape_length(kind, clip + extra, clip, r) == R.shape_length(kind, clip, clip, r)
    assert R.SHAPES[kind](float(clip), clip, r) == pytest.approx(r, abs=TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_shape_is_strictly_between_r_and_1_inside_the_clip(kind):
    """A formula that reaches r (or leaves 1) too early fails here, whatever the clamp does."""
    for clip, r in ((10, 0.5), (4096, 0.5), (4096, 0.1), (100, 0.9)):
        values = [R.shape_length(kind, x, clip, r) for x in range(1, clip)]
        assert all(r < v < 1.0 for v in values), (clip, r)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("exponential", math.exp(-math.log(2) * 1000 / 4096)),  # lambda = ln(2)/4096
        ("linear", 1 - 0.5 * 1000 / 4096),
        ("cosine", 0.5 + 0.5 * (1 + math.cos(math.pi * 1000 / 4096)) / 2),
    ],
)
def test_shape_exact_values(kind, expected):
    assert R.shape_length(kind, 1000, 4096, 0.5) == pytest.approx(expected, rel=1e-12)


def test_shapes_differ_in_the_middle():
    # exponential is convex, cosine concave: at L/2 exp = sqrt(r) < linear = (1+r)/2 = cosine.
    mid = [R.shape_length(k, 2048, 4096, 0.25) for k in KINDS]
    assert mid[0] == pytest.approx(0.5)
    assert mid[1] == pytest.approx(0.625) == mid[2]
    assert R.shape_length("cosine", 1024, 4096, 0.25) > R.shape_length("linear", 1024, 4096, 0.25)


def test_shape_validation():
    with pytest.raises(ValueError, match="valid shapes: cosine, exponential, linear"):
        R.shape_length("square", 1, 10, 0.5)
    for bad_r in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="r "):
            R.shape_length("linear", 1, 10, bad_r)
    with pytest.raises(ValueError, match="clip"):
        R.shape_length("linear", 1, 0, 0.5)
    with pytest.raises(ValueError, match="length"):
        R.shape_length("linear", -1, 10, 0.5)


def test_compression_reward():
    kw = dict(kind="exponential", length_clip=100, r=0.5)
    assert R.compression_reward(True, 50, False, **kw) == pytest.approx(math.sqrt(0.5))
    assert R.compression_reward(True, 50, True, **kw) == 0.0
    assert R.compression_reward(False, 50, False, **kw) == 0.0
    assert R.is_clipped(99, 100) is False and R.is_clipped(100, 100) is True


# ---------------------------------------------------------------------------- format / length


@pytest.mark.parametrize(
    "text, ok",
    [
        ("<think>a\n\nb</think>\nSo \\boxed{42}.", True),
        ("reasoning without open tag</think> \\boxed{\\frac{1}{2}}", True),
        ("</think>\\boxed{x^{2}}", True),
        ("no think close \\boxed{1}", False),
        ("<think>a</think>no box", False),
        ("a</think>\\boxed{1} and \\boxed{2}", False),
        ("a</think>\\boxed{}", False),
        ("a</think>\\boxed{ unbalanced", False),
        ("a</think>b</think>\\boxed{1}", False),
        ("a</think>\\boxed{1}<think>again", False),
        ("<think><think>a</think>\\boxed{1}", False),
        ("\\boxed{1} in think</think>\\boxed{1}", True),  # only the answer part is checked
    ],
)
def test_format_ok(text, ok):
    assert R.format_ok(text) is ok


def test_length_penalty():
    assert R.length_penalty(4096, 4096) == 0.0
    assert R.length_penalty(100, 4096) == 0.0
    assert R.length_penalty(6096, 4096) == pytest.approx(-0.5)
    assert R.length_penalty(4596, 4096) == pytest.approx(-0.125)
    assert R.length_penalty(4596, 4096, mode="step") == pytest.approx(-0.25)
    assert R.length_penalty(6097, 4096, mode="step") == pytest.approx(-0.75)
    assert R.length_penalty(4196, 4096, per_unit=1.0, unit=100) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="continuous, step"):
        R.length_penalty(5000, 4096, mode="linear")


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 50_000), clip=st.integers(1, 20_000), mode=st.sampled_from(["continuous", "step"]))
def test_length_penalty_non_positive_and_non_increasing(n, clip, mode):
    assert R.length_penalty(n, clip, mode=mode) <= 0.0
    assert R.length_penalty(n + 1, clip, mode=mode) <= R.length_penalty(n, clip, mode=mode)


# ---------------------------------------------------------------------------- TRL callables


def _fake_grade_many(pairs, *, answer_rule="boxed"):
    """Stand-in grader: correct when the response holds ``\\boxed{gold}`` (or ends with gold)."""
    _fake_grade_many.calls.append((list(pairs), answer_rule))
    if answer_rule == "last_number":
        return [resp.rstrip(". ").endswith(gold) for resp, gold in pairs]
    return [f"\\boxed{{{gold}}}" in resp for resp, gold in pairs]


_fake_grade_many.calls = []


@pytest.fixture
def fake_grading(monkeypatch):
    """Route rewards' grading through ``_fake_grade_many`` (works whether grading.py exists or not)."""
    try:
        import egrc_lite.grading as module
    except ImportError:
        module = types.ModuleType("egrc_lite.grading")
        monkeypatch.setitem(sys.modules, "egrc_lite.grading", module)
        monkeypatch.setattr(egrc_lite, "grading", module, raising=False)
    monkeypatch.setattr(module, "grade_many", _fake_grade_many, raising=False)
    _fake_grade_many.calls.clear()
    return _fake_grade_many


def _trl_kwargs(golds, logged=None):
    """The keyword arguments GRPOTrainer._calculate_rewards passes besides the completions."""
    logged = {} if logged is None else logged
    return {
        "answer": golds,
        "problem": ["p"] * len(golds),
        "trainer_state": None,
        "log_extra": lambda column, values: None,
        "log_metric": lambda name, value: logged.__setitem__(name, value),
    }


def test_compression_reward_callable(fake_grading):
    fn = RF.CompressionReward(RewardConfig(shape="linear", r=0.5), length_clip=10)
    completions = ["a</think>\\boxed{4}", "a</think>\\boxed{5}", "long</think>\\boxed{4}", "b</think>\\boxed{4}"]
    ids = [[0] * 5, [0] * 5, [0] * 10, [0] * 0]
    logged = {}
    out = fn(prompts=["q"] * 4, completions=completions, completion_ids=ids, **_trl_kwargs(["4"] * 4, logged))
    # correct len 5 -> 1 - 0.5*5/10; wrong -> 0; clipped (len == L) although correct -> 0; len 0 -> 1
    assert out == [pytest.approx(0.75), 0.0, 0.0, 1.0]
    assert fn.__name__ == "compression"
    assert logged == {"compress/reached_clip_rate": 0.25, "compress/accuracy": 0.75}
    (pairs, rule), = fake_grading.calls  # one batched grading call
    assert rule == "boxed" and pairs[1] == ("a</think>\\boxed{5}", "4")


def test_callables_accept_conversational_completions(fake_grading):
    conv = [[{"role": "assistant", "content": "r</think>\\boxed{7}"}], [{"role": "assistant", "content": "r"}]]
    ids = [[1, 2], [1, 2]]
    kw = _trl_kwargs(["7", "7"])
    comp = RF.CompressionReward(RewardConfig(), 100)
    shaped = R.shape_length("exponential", 2, 100, 0.5)
    assert comp(prompts=[[]] * 2, completions=conv, completion_ids=ids, **kw) == [pytest.approx(shaped), 0.0]
    assert RF.FormatReward(RewardConfig())(prompts=None, completions=conv, completion_ids=ids, **kw) == [0.1, 0.0]
    assert RF.AnswerReward(RewardConfig())(prompts=None, completions=conv, completion_ids=ids, **kw) == [1.0, 0.0]


def test_answer_rule_and_int_golds_are_passed_to_grader(fake_grading):
    fn = RF.AnswerReward(RewardConfig(answer_rule="last_number"))
    out = fn(prompts=["q"], completions=["so it is 12."], completion_ids=[[1]], **_trl_kwargs([12]))
    assert out == [1.0]
    assert fake_grading.calls[-1] == ([("so it is 12.", "12")], "last_number")


def test_exploration_callables_give_format_answer_and_length_parts(fake_grading):
    cfg = RewardConfig(format_reward=0.2, length_penalty=0.5, length_penalty_unit=10, length_penalty_mode="step")
    funcs = RF.build_reward_funcs("explore", cfg, StageConfig(mode="explore", steps=1, length_clip=20))
    assert [f.__name__ for f in funcs] == ["format", "answer", "length"]
    texts = ["t</think>\\boxed{1}", "t</think>\\boxed{2}", "no format 1"]
    ids = [[0] * 15, [0] * 21, [0] * 45]
    kw = _trl_kwargs(["1", "1", "1"])
    per_func = [f(prompts=["q"] * 3, completions=texts, completion_ids=ids, **kw) for f in funcs]
    assert per_func == [[0.2, 0.2, 0.0], [1.0, 0.0, 0.0], [0.0, -0.5, -1.5]]
    # TRL sums them: R = R_format + R_answer + R_length (method.md s3)
    assert [sum(col) for col in zip(*per_func)] == pytest.approx([1.2, -0.3, -1.5])
    default = RF.build_reward_funcs("explore", RewardConfig(), StageConfig(mode="explore", steps=1, length_clip=4096))
    parts = [f(prompts=["q"], completions=["x</think>\\boxed{3}"], completion_ids=[[0] * 4596],
               **_trl_kwargs(["3"]))[0] for f in default]
    assert parts == [0.1, 1.0, pytest.approx(-0.125)]  # 500 tokens past L: 0.25 per 1k, continuous


def test_callables_pickle_round_trip(fake_grading):
    cfg = RewardConfig(shape="cosine", r=0.25)
    unanswered = dict(max_completion_length=12, eos_token_ids=[2], think_opened=False)
    funcs = [RF.CompressionReward(cfg, 8, **unanswered), RF.FormatReward(cfg, **unanswered),
             RF.AnswerReward(cfg, **unanswered), RF.LengthPenaltyReward(cfg, 8)]
    kw = _trl_kwargs(["3", "3"])
    args = dict(prompts=["q", "q"], completions=["x</think>\\boxed{3}", "y"], completion_ids=[[1] * 4, [1] * 12])
    for fn in funcs:
        clone = pickle.loads(pickle.dumps(fn))
        assert type(clone) is type(fn) and clone.__name__ == fn.__name__ and vars(clone) == vars(fn)
        assert clone(**args, **kw) == fn(**args, **kw)
    assert funcs[0](**args, **kw) == [pytest.approx(0.25 + 0.75 * (1 + math.cos(math.pi / 2)) / 2), 0.0]


# ---------------------------------------------------------------------------- unanswered completions


CUT_BOXED = "let me try \\boxed{42} and then check whether"  # a tentative box while thinking, cut off


def _explore(length_clip=4, **unanswered):
    """The explore callables of a stage with clip L = length_clip (cap 2L), maybe bound to a trainer."""
    stage = StageConfig(mode="explore", steps=1, length_clip=length_clip)
    funcs = RF.build_reward_funcs("explore", RewardConfig(), stage)
    if unanswered:
        RF.bind_trainer(funcs, types.SimpleNamespace(**unanswered))
    return funcs


def _parts(funcs, texts, ids, prompts=None):
    prompts = prompts or ["q"] * len(texts)
    return [f(prompts=prompts, completions=texts, completion_ids=ids, **_trl_kwargs(["42"] * len(texts)))
            for f in funcs]


def test_truncated_completion_with_a_boxed_answer_gets_no_answer_or_format_reward(fake_grading):
    """Cut at the cap 2L = 8 without EOS: unanswered (answer 0, format 0) and the full length penalty."""
    fmt, ans, length = _parts(_explore(), [CUT_BOXED, "x</think>\\boxed{42} so", "x</think>\\boxed{42}"],
                              [[7] * 8, [7] * 8, [7] * 7])
    assert ans == [0.0, 0.0, 1.0]
    assert fmt == [0.0, 0.0, 0.1]
    assert length == [pytest.approx(-0.001), pytest.approx(-0.001), pytest.approx(-0.00075)]
    assert all(pairs == [("x</think>\\boxed{42}", "42")] for pairs, _ in fake_grading.calls)  # only it is graded


def test_eos_at_the_cap_is_an_answer_once_the_trainer_tells_the_eos_ids(fake_grading):
    text, ids = "x</think>\\boxed{42}", [[7] * 7 + [2]]  # 8 tokens, the last an EOS
    assert [p[0] for p in _parts(_explore(), [text], ids)] == [0.0, 0.0, pytest.approx(-0.001)]  # EOS unknown
    bound = _explore(eos_token_ids=[2], processing_class=None)
    assert [p[0] for p in _parts(bound, [text], ids)] == [0.1, 1.0, pytest.approx(-0.001)]
    assert [p[0] for p in _parts(bound, [text], [[7] * 8])] == [0.0, 0.0, pytest.approx(-0.001)]


class _ThinkTemplate:
    """A tokenizer whose chat template opens ``<think>`` (as DeepSeek-R1-Distill's does)."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return "<|User|>" + messages[-1]["content"] + "<|Assistant|><think>\n"


def test_thinking_never_closed_is_unanswered_when_the_template_opened_it(fake_grading):
    short = ["so \\boxed{42}"]  # ended by itself (EOS) before the cap, no </think>
    conv = [[{"role": "user", "content": "q"}]]
    assert [p[0] for p in _parts(_explore(), short, [[7, 2]], conv)] == [0.0, 1.0, 0.0]  # no <think>: whole text
    opened = _explore(eos_token_ids=[2], processing_class=_ThinkTemplate())
    assert opened[1].think_opened and R.template_opens_think(_ThinkTemplate())
    assert [p[0] for p in _parts(opened, short, [[7, 2]], conv)] == [0.0, 0.0, 0.0]
    assert [p[0] for p in _parts(opened, ["a</think>\\boxed{42}"], [[7, 2]], conv)] == [0.1, 1.0, 0.0]
    # a text prompt that ends inside <think>, or a completion that opens one itself, without the template
    assert [p[0] for p in _parts(_explore(), short, [[7, 2]], ["<|Assistant|><think>\n"])] == [0.0, 0.0, 0.0]
    assert [p[0] for p in _parts(_explore(), ["<think>so \\boxed{42}"], [[7, 2]])] == [0.0, 0.0, 0.0]


def test_compression_reward_ignores_an_answer_inside_unclosed_thinking(fake_grading):
    fn = RF.CompressionReward(RewardConfig(shape="linear"), 10, think_opened=True)
    out = fn(prompts=["q"] * 2, completions=["so \\boxed{42}", "a</think>\\boxed{42}"], completion_ids=[[7] * 5] * 2,
             **_trl_kwargs(["42", "42"]))
    assert out == [0.0, pytest.approx(0.75)]


def test_build_reward_funcs_passes_the_stage_cap_and_the_trainer_binds_the_rest():
    stage = StageConfig(mode="explore", steps=1, length_clip=100)
    funcs = RF.build_reward_funcs("explore", RewardConfig(), stage, eos_token_ids=[5], think_opened=True)
    assert [(f.max_completion_length, f.eos_token_ids, f.think_opened) for f in funcs[:2]] == [(200, (5,), True)] * 2
    (comp,) = RF.build_reward_funcs("compress", RewardConfig(), StageConfig(mode="compress", steps=1, length_clip=64))
    assert comp.max_completion_length == 64
    RF.bind_trainer([comp, len], types.SimpleNamespace(eos_token_ids=[1, 2], processing_class=object()))
    assert (comp.eos_token_ids, comp.think_opened) == ((1, 2), False)


def test_missing_inputs_raise_helpful_errors(fake_grading):
    fn = RF.CompressionReward(RewardConfig(), 8)
    with pytest.raises(ValueError, match="completion_ids"):
        fn(prompts=["q"], completions=["a"], completion_ids=None, answer=["1"])
    with pytest.raises(ValueError, match="column 'answer'.*columns passed: solution"):
        fn(prompts=["q"], completions=["a"], completion_ids=[[1]], solution=["1"], trainer_state=None)
    custom = RF.AnswerReward(RewardConfig(), answer_key="solution")
    assert custom(prompts=["q"], completions=["\\boxed{1}"], completion_ids=[[1]], solution=["1"]) == [1.0]


def test_build_reward_funcs_modes():
    cfg = RewardConfig()
    stage = StageConfig(mode="compress", steps=1, length_clip=64)
    (comp,) = RF.build_reward_funcs("compress", cfg, stage)
    assert isinstance(comp, RF.CompressionReward) and comp.length_clip == 64
    (ent,) = RF.build_reward_funcs("entangled", cfg, stage)
    assert isinstance(ent, RF.CompressionReward)
    with pytest.raises(ValueError, match="compress, explore, entangled"):
        RF.build_reward_funcs("grpo", cfg, stage)


def test_real_grader_end_to_end():
    pytest.importorskip("egrc_lite.grading")
    fn = RF.CompressionReward(RewardConfig(shape="exponential", r=0.5), length_clip=100)
    out = fn(
        prompts=["q"] * 3,
        completions=["2+2</think>The answer is \\boxed{4}.", "</think>\\boxed{5}", "no answer"],
        completion_ids=[[0] * 50, [0] * 50, [0] * 50],
        answer=["4", "4", "4"],
    )
    assert out == [pytest.approx(math.sqrt(0.5)), 0.0, 0.0]


def test_import_does_not_pull_torch():
    code = "import sys, egrc_lite.train.rewards, egrc_lite.evaluation.metrics, egrc_lite.train.schedule; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
