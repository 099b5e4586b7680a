"""Advantage estimators in a named registry (method.md s2, s3, s5); pure torch, no trainer.

Every estimator has the same signature and returns an :class:`AdvantageResult`::

    fn(rewards, *, group_size=None, correct=None, beta=1.0, eps=1e-4, unbiased=True) -> AdvantageResult

``rewards`` is ``[B]`` with ``B = num_prompts * G``; groups are consecutive blocks of ``G``
(TRL's layout). ``mask`` is ``[B]`` bool: the samples that contribute to the loss *and* to its
normaliser. A masked-out sample has advantage 0 and must be left out of the token count.

=====================  ======================================================  ===========
name                   advantage                                                mask
=====================  ======================================================  ===========
``absolute_positive``  ``A = beta * R`` where ``R > 0``, else 0                  ``R > 0``
``group_relative``     ``A = (R - mean_g) / (std_g + eps)``; 0 if ``std_g = 0``   all true
``entangled``          per group: accuracy >= 50% -> ``absolute_positive``,     mixed
                       else ``group_relative`` on correctness
=====================  ======================================================  ===========

An option on top of any of them: :func:`drop_rows` (DAPO's overlong filtering, ``reward.overlong_filter``)
takes given samples out of the loss and the normaliser.

>>> import torch
>>> res = get_advantage_fn("absolute_positive")(torch.tensor([0.0, 0.5, 0.8, 0.0]), beta=2.0)
>>> res.advantages.tolist(), res.mask.tolist()
([0.0, 1.0, 1.600000023841858, 0.0], [False, True, True, False])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

ZERO_STD = 1e-6
"""A group std below this is float noise of equal rewards: the group gets zero advantage."""

STAGE_ADVANTAGE = {"compress": "absolute_positive", "explore": "group_relative", "entangled": "entangled"}
"""The estimator each stage mode uses by default."""


@dataclass
class AdvantageResult:
    """Advantages ``[B]`` (float), mask ``[B]`` (bool) and scalar stats for logging."""

    advantages: torch.Tensor
    mask: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


def _check(rewards: torch.Tensor, group_size: int | None) -> torch.Tensor:
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B], got shape {tuple(rewards.shape)}")
    if group_size is not None and (group_size < 1 or rewards.numel() % group_size != 0):
        raise ValueError(f"batch of {rewards.numel()} rewards is not a whole number of groups of {group_size}")
    return rewards.float()


def absolute_positive(
    rewards: torch.Tensor,
    *,
    group_size: int | None = None,
    correct: torch.Tensor | None = None,
    beta: float = 1.0,
    eps: float = 1e-4,
    unbiased: bool = True,
) -> AdvantageResult:
    """Positive-only absolute advantage (method.md s2): ``A = beta * R`` for ``R > 0``.

    Samples with ``R <= 0`` get ``A = 0`` and ``mask = False``; no group mean, no std. An
    all-zero batch gives an all-false mask. ``correct``, ``eps``, ``unbiased`` are unused.

    >>> r = absolute_positive(torch.tensor([0.0, 0.0]))
    >>> r.advantages.tolist(), r.mask.tolist(), r.stats["adv/kept"]
    ([0.0, 0.0], [False, False], 0.0)
    """
    rewards = _check(rewards, group_size)  # [B]
    mask = rewards > 0  # [B]
    advantages = torch.where(mask, beta * rewards, torch.zeros_like(rewards))  # [B]
    kept = float(mask.sum())
    return AdvantageResult(advantages, mask, {"adv/kept": kept, "adv/kept_frac": kept / max(1, rewards.numel())})


def group_relative(
    rewards: torch.Tensor,
    *,
    group_size: int | None = None,
    correct: torch.Tensor | None = None,
    beta: float = 1.0,
    eps: float = 1e-4,
    unbiased: bool = True,
) -> AdvantageResult:
    """GRPO advantage (method.md s3): ``A = (R - mean_g) / (std_g + eps)`` per group of ``G``.

    ``std_g`` is the sample std (``unbiased=True``, as TRL) or the population std; ``eps`` (TRL:
    1e-4) keeps the division finite. A group whose rewards are all equal (``std_g`` below
    ``ZERO_STD``, float noise) gets ``A = 0`` exactly. All samples count (mask true).
    ``group_size`` is required; ``correct`` and ``beta`` are unused.

    >>> r = group_relative(torch.tensor([1.0, 0.0, 2.0, 2.0]), group_size=2, eps=0.0)
    >>> [round(a, 4) for a in r.advantages.tolist()], r.stats["adv/zero_std_frac"]
    ([0.7071, -0.7071, 0.0, 0.0], 0.5)
    """
    if group_size is None:
        raise ValueError("group_relative needs group_size (G, the completions per prompt)")
    rewards = _check(rewards, group_size)  # [B]
    grouped = rewards.view(-1, group_size)  # [P, G]
    mean = grouped.mean(dim=1, keepdim=True)  # [P, 1]
    if group_size > 1:
        std = grouped.std(dim=1, keepdim=True, unbiased=unbiased)  # [P, 1]
    else:
        std = torch.zeros_like(mean)  # [P, 1]
    flat = std < ZERO_STD  # [P, 1]
    scaled = (grouped - mean) / (std + eps)  # [P, G]
    advantages = torch.where(flat, torch.zeros_like(scaled), scaled).reshape(-1)  # [B]
    mask = torch.ones_like(rewards, dtype=torch.bool)  # [B]
    zero_frac = float(flat.float().mean()) if flat.numel() else 0.0
    return AdvantageResult(advantages, mask, {"adv/zero_std_frac": zero_frac})


def entangled(
    rewards: torch.Tensor,
    *,
    group_size: int | None = None,
    correct: torch.Tensor | None = None,
    beta: float = 1.0,
    eps: float = 1e-4,
    unbiased: bool = True,
    threshold: float = 0.5,
) -> AdvantageResult:
    """Entropy-entangled baseline (method.md s5): pick the objective per prompt group.

    ``acc_g = mean(correct_g)``. If ``acc_g >= threshold`` the group uses the compression
    objective (:func:`absolute_positive` on the shaped ``rewards``); otherwise the accuracy
    objective (:func:`group_relative` on ``correct`` as 0/1). ``correct`` defaults to
    ``rewards > 0`` (exact for the compression reward, whose correct unclipped values are
    ``>= r > 0``). Stats count samples per objective (paper Fig. 3a): ``adv/compress_samples``,
    ``adv/accuracy_samples``, the kept ones ``adv/kept``, and the group counts.

    >>> r = entangled(torch.tensor([0.9, 0.7, 0.0, 0.0, 0.6, 0.0, 0.0, 0.0]), group_size=4, eps=0.0)
    >>> [round(a, 2) for a in r.advantages.tolist()]
    [0.9, 0.7, 0.0, 0.0, 1.5, -0.5, -0.5, -0.5]
    >>> r.mask.tolist(), r.stats["adv/compress_samples"], r.stats["adv/accuracy_samples"]
    ([True, True, False, False, True, True, True, True], 4.0, 4.0)
    """
    if group_size is None:
        raise ValueError("entangled needs group_size (G, the completions per prompt)")
    rewards = _check(rewards, group_size)  # [B]
    if correct is None:
        correct = rewards > 0  # [B]
    correct = correct.to(rewards.device).float().reshape(-1)  # [B]
    if correct.numel() != rewards.numel():
        raise ValueError(f"correct has {correct.numel()} values for {rewards.numel()} rewards")
    acc = correct.view(-1, group_size).mean(dim=1)  # [P]
    compress_group = acc >= threshold  # [P]
    compress = compress_group.repeat_interleave(group_size)  # [B]

    comp = absolute_positive(rewards, beta=beta)  # [B]
    accu = group_relative(correct, group_size=group_size, eps=eps, unbiased=unbiased)  # [B]
    advantages = torch.where(compress, comp.advantages, accu.advantages)  # [B]
    mask = torch.where(compress, comp.mask, accu.mask)  # [B]
    n_comp = float(compress.sum())
    stats = {
        "adv/compress_samples": n_comp,
        "adv/accuracy_samples": float(rewards.numel()) - n_comp,
        "adv/compress_groups": float(compress_group.sum()),
        "adv/accuracy_groups": float((~compress_group).sum()),
        "adv/kept": float(mask.sum()),
    }
    return AdvantageResult(advantages, mask, stats)


def drop_rows(result: AdvantageResult, drop: torch.Tensor) -> AdvantageResult:
    """``result`` with the samples ``drop`` (``[B]`` bool) given no loss weight: ``A = 0`` and ``mask = False``.

    DAPO's overlong filtering (Yu et al. 2025, s3.4): a truncated sample (cut at the cap without EOS) is
    masked out of the loss instead of being punished as wrong, so a reasoning that was merely long
    is not taught to be wrong. The advantages of the others stay as the estimator computed them (the
    group statistics include the dropped samples, as in DAPO: only the loss is masked). Adds
    ``adv/dropped`` (samples dropped that the estimator had kept) and updates ``adv/kept`` when present.

    >>> res = group_relative(torch.tensor([1.0, 0.0, 1.0, 0.0]), group_size=4, eps=0.0)
    >>> out = drop_rows(res, torch.tensor([False, True, False, False]))
    >>> [round(a, 4) for a in out.advantages.tolist()], out.mask.tolist(), out.stats["adv/dropped"]
    ([0.866, 0.0, 0.866, -0.866], [True, False, True, True], 1.0)
    """
    drop = drop.to(result.mask.device).reshape(-1).bool()  # [B]
    if drop.numel() != result.mask.numel():
        raise ValueError(f"drop has {drop.numel()} values for {result.mask.numel()} samples")
    mask = result.mask & ~drop  # [B]
    advantages = torch.where(mask, result.advantages, torch.zeros_like(result.advantages))  # [B]
    stats = {**result.stats, "adv/dropped": float((result.mask & drop).sum())}
    if "adv/kept" in stats:
        stats["adv/kept"] = float(mask.sum())
    if "adv/kept_frac" in stats:
        stats["adv/kept_frac"] = float(mask.sum()) / max(1, mask.numel())
    return AdvantageResult(advantages, mask, stats)


ADVANTAGES: dict[str, Callable[..., AdvantageResult]] = {
    "absolute_positive": absolute_positive,
    "group_relative": group_relative,
    "entangled": entangled,
}


def get_advantage_fn(name: str) -> Callable[..., AdvantageResult]:
    """The estimator registered as ``name``; an unknown name lists the valid ones.

    >>> get_advantage_fn("grpo")
    Traceback (most recent call last):
    ...
    ValueError: unknown advantage estimator 'grpo'; valid names: absolute_positive, entangled, group_relative
    """
    try:
        return ADVANTAGES[name]
    except KeyError:
        raise ValueError(
            f"unknown advantage estimator {name!r}; valid names: {', '.join(sorted(ADVANTAGES))}"
        ) from None
