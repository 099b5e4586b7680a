"""What a training step logs: its metrics (:func:`generation_stats`) and its sampled completions (``train.sample_every``)."""

from __future__ import annotations

from typing import Any

import torch


def capture_samples(logs: Any, inputs: list[dict[str, Any]], rewards_per_func: torch.Tensor, rewards: torch.Tensor,
                    result: Any, lengths: torch.Tensor, reward_names: list[str]) -> list[dict[str, Any]]:
    """Gathered prompts/completions of this batch from TRL's completion log ``logs``, with our scores.

    ``rewards_per_func`` ``[B_all, F]``, ``rewards`` and ``lengths`` ``[B_all]``, ``result`` an
    :class:`~egrc_lite.train.advantages.AdvantageResult`; ``[]`` when the log lacks the batch.
    """
    from accelerate.utils import gather_object

    n_all = rewards.numel()
    if not logs or len(logs.get("completion", ())) < n_all:
        return []
    prompts, completions = list(logs["prompt"])[-n_all:], list(logs["completion"])[-n_all:]
    extra = gather_object([{"id": x.get("id"), "answer": x.get("answer")} for x in inputs])
    rpf = rewards_per_func.float().cpu()
    return [{
        "id": extra[i].get("id") if i < len(extra) else None,
        "prompt": _text(prompts[i]), "completion": _text(completions[i]),
        "answer": extra[i].get("answer") if i < len(extra) else None,
        "reward": _json_float(rewards[i]),
        "rewards": {n: _json_float(rpf[i, j]) for j, n in enumerate(reward_names)},
        "advantage": float(result.advantages[i]), "kept": bool(result.mask[i]), "length": int(lengths[i]),
    } for i in range(n_all)]


def _json_float(value: Any) -> float | None:
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _text(message: Any) -> str:
    """The text of a prompt/completion: a string, or the last message's content of a conversation.

    >>> _text([{"role": "assistant", "content": "hi"}]), _text("plain")
    ('hi', 'plain')
    """
    if isinstance(message, str):
        return message
    if isinstance(message, list) and message and isinstance(message[-1], dict):
        return str(message[-1].get("content", ""))
    return str(message)


def _quantiles(values: torch.Tensor, qs: tuple[float, ...]) -> list[float]:
    if values.numel() == 0:
        return [float("nan")] * len(qs)
    return torch.quantile(values.float(), torch.tensor(qs, dtype=torch.float32)).tolist()


def generation_stats(reward_func_names: list[str], rewards_per_func: torch.Tensor, rewards: torch.Tensor,
                     result: Any, lengths: torch.Tensor, truncated: torch.Tensor, skipped: bool) -> dict[str, float]:
    """One generation's metrics: rewards (total and per function), answer accuracy, completion lengths,
    the truncated and kept fractions, whether the update is skipped, and the advantage statistics."""
    rpf = rewards_per_func.float().cpu()  # [B_all, F]
    stats: dict[str, float] = {"reward/mean": float(torch.nanmean(rewards.float().cpu()))}
    for i, name in enumerate(reward_func_names):
        stats[f"reward/{name}"] = float(torch.nanmean(rpf[:, i]))
    if "answer" in reward_func_names:
        stats["acc"] = float((rpf[:, reward_func_names.index("answer")] > 0).float().mean())
    p50, p90 = _quantiles(lengths, (0.5, 0.9))
    stats.update({"len/mean": float(lengths.mean()), "len/p50": p50, "len/p90": p90,
                  "truncated_rate": float(truncated.float().mean()),  # hit the cap without EOS
                  "kept_frac": float(result.mask.float().mean()),
                  "skipped_update": float(skipped)})
    kept = result.mask
    stats["adv/mean_kept"] = float(result.advantages[kept].mean()) if bool(kept.any()) else 0.0
    for key, value in result.stats.items():
        stats[key if key.startswith("adv/") else f"adv/{key}"] = float(value)
    return stats


def truncated_rows(ids: torch.Tensor, mask: torch.Tensor, eos_ids: Any, cap: int) -> torch.Tensor:
    """``[B]`` bool: completions (``ids``, ``mask``: ``[B, T]``) that reached ``cap`` tokens without an EOS."""
    lengths = mask.sum(dim=1)  # [B]
    last = ids.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # [B]
    eos = torch.tensor(list(eos_ids), device=ids.device)
    return (~torch.isin(last, eos)) & (lengths >= cap)
