"""Which tokens enter TRL's loss, with what weight, over what normaliser (method.md s2); pure torch, no TRL.

TRL's "dapo" loss of one micro-batch on one of ``P`` processes is (grpo_trainer ``_compute_loss``)::

    loss = sum_{b,t} l[b,t] * completion_mask[b,t] * tool_mask[b,t] / (num_items_in_batch / P)

with ``steps_per_generation = gradient_accumulation_steps`` (one generation per optimiser step).
The micro-batch gradients add up over accumulation (TRL sets ``loss_is_scaled_for_ga``) and DDP
averages them over processes, so the step's gradient is ``sum over the generation's tokens of
grad(l) * mask / num_items_in_batch``: exact for any accumulation and process count as long as
``num_items_in_batch`` is a count over the whole generation batch of all processes. A later pass
over the same generation (``num_iterations > 1``) reuses TRL's buffered batch, so the mask and the
normaliser carry over unchanged. :func:`kept_loss_mask` builds both for one aggregation:

``token`` (default)
    ``tool_mask = 1`` on kept rows, ``0`` on dropped ones; ``num_items_in_batch`` = kept tokens.
    Step loss ``(1/N_kept) sum_{i kept} sum_t l[i,t]``.
``sequence``
    ``tool_mask = 1/|o_i|`` on the tokens of kept row ``i`` (``|o_i|`` its loss tokens), ``0``
    elsewhere; ``num_items_in_batch`` = kept samples. Step loss ``(1/S_kept) sum_{i kept}
    (1/|o_i|) sum_t l[i,t]``. The weights also reach TRL's KL term and its logged clip ratios.

>>> cm = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])
>>> keep = torch.tensor([True, False, True])
>>> mask, n = kept_loss_mask(cm, None, keep, "token", lambda x: x)
>>> mask.tolist(), int(n)
([[1, 1, 1], [0, 0, 0], [1, 1, 1]], 3)
>>> mask, n = kept_loss_mask(cm, None, keep, "sequence", lambda x: x)
>>> (mask * cm).tolist(), int(n)
([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], 2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

LOSS_AGGREGATIONS = ("token", "sequence")
"""``train.loss_aggregation`` values (method.md s2, "Loss normalisation")."""

SCORED = "egrc_scored"
"""Key of the marker that egrc-lite's ``_generate_and_score_completions`` puts into every batch it scored
(a 0-dim tensor: TRL's shuffle and split pass those through); the loss refuses a batch without it."""


def kept_loss_mask(completion_mask: torch.Tensor, tool_mask: torch.Tensor | None, keep: torch.Tensor,
                   aggregation: str, global_sum: Callable[[torch.Tensor], torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's loss-only ``tool_mask`` ``[B, T]`` and ``num_items_in_batch`` for the kept rows ``keep`` ``[B]``.

    ``completion_mask`` ``[B, T]`` (stays the attention mask), ``tool_mask`` TRL's own ``[B, T]`` or
    ``None``; ``global_sum`` sums a local 0-dim count over all processes (``gather(x).sum()``).
    """
    if aggregation not in LOSS_AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {aggregation!r}; valid: {', '.join(LOSS_AGGREGATIONS)}")
    base = torch.ones_like(completion_mask) if tool_mask is None else tool_mask  # [B, T]
    if aggregation == "token":
        loss_mask = base * keep.unsqueeze(1).to(completion_mask.dtype)  # [B, T]
        return loss_mask, global_sum((completion_mask * loss_mask).sum())  # kept tokens, all processes
    tokens = (completion_mask * base).sum(dim=1)  # [B] |o_i|: loss tokens per row
    kept = keep & (tokens > 0)  # [B]
    weight = kept.float() / tokens.clamp(min=1).float()  # [B] 1/|o_i| on kept rows
    return base.float() * weight.unsqueeze(1), global_sum(kept.sum())  # kept samples, all processes


def check_trl_settings(trainer: Any) -> None:
    """Refuse (one line, naming the setting) a trainer whose loss settings the normaliser is not written for.

    ``loss_type`` must be ``"dapo"`` (the only TRL loss that divides by ``num_items_in_batch`` without
    re-normalising per micro-batch); ``steps_per_generation`` must equal ``gradient_accumulation_steps``
    (one generation per optimiser step: the count covers exactly one step and the empty-step skip is
    per generation); ``num_iterations`` an integer ``>= 1`` (each generation serves that many steps;
    :func:`require_scored` checks that later passes get the generation-time log-probs).
    """
    from egrc_lite.config import ConfigError

    args = trainer.args
    loss_type = getattr(trainer, "loss_type", args.loss_type)
    spg, accum = args.steps_per_generation, args.gradient_accumulation_steps
    mu = getattr(trainer, "num_iterations", args.num_iterations)
    ok_mu = isinstance(mu, int) and not isinstance(mu, bool) and mu >= 1 and mu == args.num_iterations
    checks = [
        (loss_type == "dapo", (f"loss_type={loss_type!r}: egrc-lite's kept-sample loss needs TRL's 'dapo' "
                               "(it divides by num_items_in_batch, the step's kept count)")),
        (spg == accum, (f"steps_per_generation={spg}: egrc-lite needs one generation per optimiser step "
                        f"(steps_per_generation = gradient_accumulation_steps = {accum})")),
        (ok_mu, f"num_iterations={mu!r}: egrc-lite needs an integer >= 1 (train.num_iterations)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"GRPOConfig.{message}")


def require_scored(inputs: dict[str, Any], num_iterations: int = 1) -> None:
    """Raise when a loss batch did not come through egrc-lite's ``_generate_and_score_completions``, or
    when it lacks the generation-time log-probs that passes after the first take their ratio against."""
    if SCORED not in inputs:
        raise RuntimeError("the loss batch was not scored by egrc-lite's _generate_and_score_completions (no "
                           f"{SCORED!r} marker): this TRL bypasses the override and would train on TRL's own "
                           "advantages; use a TRL version egrc-lite supports (1.15, 1.16)")
    if num_iterations > 1 and inputs.get("old_per_token_logps") is None:
        raise RuntimeError(f"train.num_iterations={num_iterations} but the loss batch has no generation-time "
                           "log-probs (old_per_token_logps): every pass would see ratio 1 and the clip would "
                           "never bind; use a TRL version egrc-lite supports (1.15, 1.16) or num_iterations 1")
