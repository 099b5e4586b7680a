"""The completions a training step logs (``train.sample_every``): TRL's completion log plus egrc-lite's scores."""

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
