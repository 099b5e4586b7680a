"""Advantage estimators: exact values on hand-made batches, edge cases, registry (CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from egrc_lite.train import advantages as A


def _t(values):
    return torch.tensor(values, dtype=torch.float32)


def _close(tensor, expected, tol=1e-5):
    assert tensor.tolist() == pytest.approx(expected, abs=tol)


# ---------------------------------------------------------------------------- absolute positive-only


def test_absolute_positive_exact():
    res = A.absolute_positive(_t([0.0, 0.5, 0.8, 0.0]), beta=1.0)
    _close(res.advantages, [0.0, 0.5, 0.8, 0.0])
    assert res.mask.tolist() == [False, True, True, False]
    assert res.mask.dtype == torch.bool
    assert res.stats == {"adv/kept": 2.0, "adv/kept_frac": 0.5}


def test_absolute_positive_scales_with_beta_and_ignores_group_mean():
    res = A.absolute_positive(_t([0.9, 0.9, 0.9, 0.1]), beta=2.0, group_size=4)
    # GRPO would make the 0.1 sample negative; the absolute advantage keeps every positive one positive
    _close(res.advantages, [1.8, 1.8, 1.8, 0.2])
    assert res.mask.all()


def test_absolute_positive_drops_negative_rewards():
    res = A.absolute_positive(_t([-0.5, 0.0, 0.25]))
    _close(res.advantages, [0.0, 0.0, 0.25])
    assert res.mask.tolist() == [False, False, True]


def test_absolute_positive_all_zero_batch():
    res = A.absolute_positive(torch.zeros(8))
    assert not res.mask.any()
    assert res.advantages.tolist() == [0.0] * 8
    assert not torch.isnan(res.advantages).any()
    assert res.stats["adv/kept"] == 0.0


# ---------------------------------------------------------------------------- group relative


def test_group_relative_exact_sample_std():
    # one group of 4: mean 0.325, unbiased std sqrt(0.4675 / 3)
    rewards = [0.0, 0.5, 0.8, 0.0]
    res = A.group_relative(_t(rewards), group_size=4, eps=0.0)
    mean = sum(rewards) / 4
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / 3)
    _close(res.advantages, [(r - mean) / std for r in rewards])
    _close(res.advantages, [-0.82329, 0.44331, 1.20327, -0.82329])
    assert res.mask.tolist() == [True] * 4


def test_group_relative_population_std_and_eps():
    res = A.group_relative(_t([1.0, 0.0]), group_size=2, eps=0.0, unbiased=False)
    _close(res.advantages, [1.0, -1.0])
    res = A.group_relative(_t([1.0, 0.0]), group_size=2, eps=0.5, unbiased=False)
    _close(res.advantages, [0.5 / 1.0, -0.5 / 1.0])


def test_group_relative_groups_are_consecutive_blocks():
    res = A.group_relative(_t([1.0, 0.0, 0.0, 0.0, 1.0, 1.0]), group_size=2, eps=0.0)
    # blocks [1, 0] [0, 0] [1, 1]: a {1, 0} pair gives +-0.5 / sqrt(0.5); equal pairs give 0
    _close(res.advantages, [0.70711, -0.70711, 0.0, 0.0, 0.0, 0.0])
    assert res.stats["adv/zero_std_frac"] == pytest.approx(2 / 3)


def test_group_relative_zero_std_group_gives_zero_not_nan():
    res = A.group_relative(_t([0.3, 0.3, 0.3, 0.3, 1.0, 0.0, 1.0, 0.0]), group_size=4)
    assert not torch.isnan(res.advantages).any()
    assert res.advantages[:4].tolist() == [0.0] * 4  # exactly 0, despite float rounding of the mean
    assert res.advantages[4].item() > 0 > res.advantages[5].item()
    assert res.mask.all()


def test_group_relative_group_of_one():
    res = A.group_relative(_t([0.7, 0.1]), group_size=1)
    assert res.advantages.tolist() == [0.0, 0.0]


def test_group_relative_needs_whole_groups():
    with pytest.raises(ValueError, match="whole number of groups of 4"):
        A.group_relative(_t([1.0, 0.0, 1.0]), group_size=4)
    with pytest.raises(ValueError, match="group_size"):
        A.group_relative(_t([1.0, 0.0]))
    with pytest.raises(ValueError, match="1-D"):
        A.group_relative(torch.zeros(2, 2), group_size=2)


# ---------------------------------------------------------------------------- entangled


def test_entangled_exact_split():
    # group 0: 3/4 correct -> compression; group 1: 1/4 -> accuracy (GRPO on 0/1);
    # group 2: exactly 2/4 -> compression (>= 50%); group 3: 0/4 -> accuracy with std 0
    rewards = _t([0.9, 0.6, 0.3, 0.0, 0.7, 0.0, 0.0, 0.0, 0.5, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    res = A.entangled(rewards, group_size=4, beta=2.0, eps=0.0)
    _close(
        res.advantages,
        [1.8, 1.2, 0.6, 0.0, 1.5, -0.5, -0.5, -0.5, 1.0, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    )
    assert res.mask.tolist() == [True, True, True, False] + [True] * 4 + [True, True, False, False] + [True] * 4
    assert res.stats == {
        "adv/compress_samples": 8.0,
        "adv/accuracy_samples": 8.0,
        "adv/compress_groups": 2.0,
        "adv/accuracy_groups": 2.0,
        "adv/kept": 13.0,
    }


def test_entangled_uses_explicit_correctness():
    # correctness given separately: a correct but clipped sample (reward 0) counts for the group
    rewards = _t([0.8, 0.0, 0.0, 0.0])
    correct = torch.tensor([True, True, False, False])
    res = A.entangled(rewards, group_size=4, correct=correct, eps=0.0)
    assert res.stats["adv/compress_samples"] == 4.0
    _close(res.advantages, [0.8, 0.0, 0.0, 0.0])
    derived = A.entangled(rewards, group_size=4, eps=0.0)  # correct = R > 0 -> 1/4 -> accuracy
    assert derived.stats["adv/accuracy_samples"] == 4.0
    _close(derived.advantages, [1.5, -0.5, -0.5, -0.5])


def test_entangled_all_zero_batch():
    res = A.entangled(torch.zeros(8), group_size=4)
    assert res.advantages.tolist() == [0.0] * 8
    assert res.stats["adv/accuracy_samples"] == 8.0


# ---------------------------------------------------------------------------- registry & loss helper


def test_registry():
    assert set(A.ADVANTAGES) == {"absolute_positive", "group_relative", "entangled"}
    assert A.get_advantage_fn("group_relative") is A.group_relative
    assert set(A.STAGE_ADVANTAGE.values()) <= set(A.ADVANTAGES)
    with pytest.raises(ValueError, match="valid names: absolute_positive, entangled, group_relative"):
        A.get_advantage_fn("gae")


@pytest.mark.parametrize("name", sorted(A.ADVANTAGES))
def test_every_estimator_shares_the_signature(name):
    res = A.get_advantage_fn(name)(_t([0.0, 1.0, 0.5, 0.0]), group_size=2, correct=None, beta=1.0, eps=1e-4)
    assert isinstance(res, A.AdvantageResult)
    assert res.advantages.shape == res.mask.shape == (4,)
    assert all(isinstance(v, float) for v in res.stats.values())

