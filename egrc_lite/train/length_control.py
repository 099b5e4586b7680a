r"""The field's length-control rewards, as pure scalar functions: the baselines of ``presets/baselines/``.

Each is a length term that :mod:`egrc_lite.train.rewards` adds to the exploration stage's format and answer
rewards in place of the method's length penalty (``reward.length_term``); ``|y|`` is always
``len(completion_ids[i])``, generated tokens.

* :func:`soft_overlong_penalty`, DAPO's soft overlong punishment (Yu et al. 2025, "DAPO: An Open-Source LLM
  Reinforcement Learning System at Scale", s3.4).
* :func:`l1_length_term`, L1's LCPO-Exact (Aggarwal & Welleck 2025, "L1: Controlling How Long A Reasoning
  Model Thinks With Reinforcement Learning"): ``r = 1[correct] - alpha |n_gold - n_y|``; the budget
  ``n_gold`` is in the prompt (:class:`egrc_lite.data.TokenBudget`).
* :func:`kimi_length_rewards`, Kimi k1.5's length reward (Kimi Team 2025, "Kimi k1.5: Scaling Reinforcement
  Learning with LLMs", s2.3.3): per group, min/max-normalised and gated by correctness.

The other two baselines are not rewards: DAPO's overlong filtering drops truncated samples from the loss
(:func:`egrc_lite.train.advantages.drop_rows`), and ThinkPrune's iterative clip tightening (Hou et al.
2025, "ThinkPrune: Pruning Long Chain-of-Thought of LLMs via Reinforcement Learning") lowers a stage's cap
on a schedule (:func:`egrc_lite.train.schedule.stage_caps`).

This module imports neither torch nor TRL.

>>> soft_overlong_penalty(90, max_length=100, buffer=20)
-0.5
>>> kimi_length_rewards([10, 20, 30], [True, True, False])
[0.5, 0.0, -0.5]
"""

from __future__ import annotations

from collections.abc import Sequence


def soft_overlong_penalty(length: int, max_length: int, buffer: int) -> float:
    """DAPO's soft overlong punishment ``R_length(y) <= 0`` with ``L_max = max_length``, ``L_cache = buffer``::

        R = 0                                      if |y| <= L_max - L_cache
        R = ((L_max - L_cache) - |y|) / L_cache    if L_max - L_cache < |y| <= L_max
        R = -1                                     if |y| > L_max

    A linear ramp from 0 to -1 over the last ``L_cache`` tokens before the cap (the cap itself gives -1).

    >>> [soft_overlong_penalty(n, 100, 20) for n in (80, 85, 100, 101)]
    [0.0, -0.25, -1.0, -1.0]
    >>> soft_overlong_penalty(5, 10, 11)
    Traceback (most recent call last):
    ...
    ValueError: the overlong buffer (11 tokens) must be in [1, max_length = 10]
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if not 1 <= buffer <= max_length:
        raise ValueError(f"the overlong buffer ({buffer} tokens) must be in [1, max_length = {max_length}]")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    expected = max_length - buffer
    if length <= expected:
        return 0.0
    if length <= max_length:
        return (expected - length) / buffer
    return -1.0


def overlong_buffer_tokens(fraction: float, max_length: int) -> int:
    """``L_cache`` in tokens: ``fraction`` of the cap, rounded, at least 1 (``reward.overlong_buffer``).

    >>> overlong_buffer_tokens(0.2, 20480), overlong_buffer_tokens(0.2, 3)
    (4096, 1)
    """
    return max(1, min(max_length, round(fraction * max_length)))


def l1_length_term(length: int, budget: int, alpha: float) -> float:
    """L1's length term ``-alpha |n_gold - n_y|`` (``n_gold = budget``); the full LCPO-Exact reward
    ``1[correct] - alpha |n_gold - n_y|`` is this plus the answer reward.

    >>> l1_length_term(1200, 1000, 0.0003), l1_length_term(800, 1000, 0.0003)
    (-0.06, -0.06)
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return -alpha * abs(budget - length)


def l1_reward(correct: bool, length: int, budget: int, alpha: float) -> float:
    """L1's LCPO-Exact reward ``r = 1[correct] - alpha |n_gold - n_y|``.

    >>> l1_reward(True, 1000, 1000, 0.0003), round(l1_reward(False, 4000, 1000, 0.0003), 4)
    (1.0, -0.9)
    """
    return (1.0 if correct else 0.0) + l1_length_term(length, budget, alpha)


def kimi_length_rewards(lengths: Sequence[int], correct: Sequence[bool]) -> list[float]:
    """Kimi k1.5's length reward for one group of responses to the same prompt::

        lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len)
        reward_i = lambda_i            if response i is correct
        reward_i = min(0, lambda_i)    if it is not

    ``min_len``, ``max_len`` over the whole group (correct or not). A group whose lengths are all equal gets 0:
    the shortest correct response earns +0.5, the longest -0.5, and a wrong response is never rewarded
    for being short.

    >>> kimi_length_rewards([10, 20, 30, 40, 50], [True, False, True, False, False])
    [0.5, 0.0, 0.0, -0.25, -0.5]
    >>> kimi_length_rewards([7, 7], [True, False])
    [0.0, 0.0]
    """
    if len(lengths) != len(correct):
        raise ValueError(f"{len(lengths)} lengths for {len(correct)} correctness values")
    if not lengths:
        return []
    shortest, longest = min(lengths), max(lengths)
    if longest == shortest:
        return [0.0] * len(lengths)
    out = []
    for n, ok in zip(lengths, correct):
        lam = 0.5 - (n - shortest) / (longest - shortest)
        out.append(lam if ok else min(0.0, lam))
    return out
