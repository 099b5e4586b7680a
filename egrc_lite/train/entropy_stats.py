"""Per-step token-entropy metrics of training: ``entropy/mean`` and the connector metrics.

The trainer (:mod:`egrc_lite.train.trainer`) adds every loss forward's token entropies to one
step's sums (:func:`entropy_sums`, reduced across processes there) and turns them into metrics
(:func:`entropy_metrics`). Stock TRL hands the entropies over from its loss forward; a backend
whose loss returns none (unsloth's ``compute_efficient`` path) gets them from
:func:`completion_entropies`, a no-grad forward over the same ids that scores them like TRL's
fused LM head::

    z_t = softcap * tanh(scale * (h_t W^T + b) / softcap) / tau        (no cap: scale * (h_t W^T + b) / tau)
    H_t = -sum_v p_t(v) log p_t(v),   p_t = softmax(z_t)

``h_t`` is the backbone's last hidden state at the position before completion token ``t``,
``(scale, softcap)`` come from the model config (:func:`logit_transform`) and ``tau`` is the
stage temperature. The head is applied to at most :data:`ENTROPY_CHUNK` real completion tokens at
a time, so the float32 ``[chunk, V]`` buffers stay bounded whatever the completion length.

``entropy/mean`` is measured at the stage temperature, so its curve jumps where the temperature
changes. ``entropy_t1/mean`` is the same mean at ``tau = 1``: the trainer keeps the backbone's last
hidden states of the loss forward (:func:`capture_last_hidden`, a forward hook, no copy; held until
the loss forward returns) and runs the LM head once more over the completion tokens, without grad
(:func:`entropies_from_hidden`). The cost is one no-grad LM-head projection plus a softmax per
completion token (no backbone forward), i.e. about a third of the head's share of the loss
forward + backward; at a stage temperature of 1 nothing extra runs.

Nothing here knows TRL; the analysis side (:func:`egrc_lite.analysis.entropy.token_entropy`,
:class:`~egrc_lite.analysis.entropy.ConnectorMatcher`) does the per-token math.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from egrc_lite.analysis.entropy import token_entropy

ENTROPY_CHUNK = 256
"""Completion tokens per LM-head chunk of :func:`completion_entropies` (bounds ``[chunk, V]`` float32)."""
N_SUMS = 8
"""Length of a step's sums: ``[sum H, n tokens, n_connector, sum H at connectors, n_other, sum H at others,
sum H at T=1, n tokens at T=1]``."""


def _base_model(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _backbone_and_head(model: Any) -> tuple[Any, Any] | None:
    """``(backbone, lm_head)`` of a causal LM (PEFT-wrapped or not); ``None`` when it has no such split."""
    base = _base_model(model)
    backbone = getattr(base, "base_model", None)  # transformers: the module under base_model_prefix
    get_head = getattr(base, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if backbone is None or backbone is base or getattr(head, "weight", None) is None:
        return None
    return backbone, head


def _parts(model: Any) -> tuple[Any, Any]:
    parts = _backbone_and_head(model)
    if parts is None:
        raise ValueError(f"{type(_base_model(model)).__name__} has no backbone + LM head to measure token entropy with")
    return parts


def can_score(model: Any) -> bool:
    """Whether :func:`completion_entropies` can measure ``model``: a backbone and an LM head with weights."""
    return _backbone_and_head(model) is not None


def logit_transform(config: Any) -> tuple[float, float | None]:
    """``(scale, softcap)`` of the LM head, read from the (text) config as TRL's fused head reads it.

    ``scale``: ``logit_scale`` (Cohere), else ``output_multiplier``, else ``lm_head_multiplier``
    (Falcon-H1), else ``1 / logits_scaling`` (Granite; HyperCLOVA X multiplies), else 1.
    ``softcap``: ``final_logit_softcapping`` (Gemma 2/3) or ``None``.

    >>> from types import SimpleNamespace as NS
    >>> logit_transform(NS()), logit_transform(NS(logits_scaling=4.0, final_logit_softcapping=30.0))
    ((1.0, None), (0.25, 30.0))
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    softcap = getattr(text, "final_logit_softcapping", None)
    for name in ("logit_scale", "output_multiplier", "lm_head_multiplier"):
        if getattr(text, name, None) is not None:
            return float(getattr(text, name)), softcap
    scaling = getattr(text, "logits_scaling", None)
    if scaling is None:
        return 1.0, softcap
    return (float(scaling) if getattr(text, "model_type", None) == "hyperclovax" else 1.0 / scaling), softcap


def _full(param: torch.Tensor | None) -> torch.Tensor | None:
    """A sharded (FSDP2 ``DTensor``) parameter as a plain tensor; others unchanged."""
    return param.full_tensor() if param is not None and hasattr(param, "full_tensor") else param


def head_entropies(hidden: torch.Tensor, head: Any, temperature: float, scale: float = 1.0,
                   softcap: float | None = None, chunk: int = ENTROPY_CHUNK) -> torch.Tensor:
    """Entropy of the head's next-token distribution per hidden state: ``[N, H] -> [N]`` float32.

    ``z = softcap * tanh(scale * (h W^T + b) / softcap)``, then ``H(softmax(z / temperature))``,
    ``chunk`` rows at a time.
    """
    weight, bias = _full(head.weight), _full(getattr(head, "bias", None))
    hidden = hidden.to(weight.device)
    out = []
    for start in range(0, hidden.size(0), chunk):
        z = torch.nn.functional.linear(hidden[start:start + chunk], weight, bias).float() * scale  # [c, V]
        if softcap:
            z = softcap * torch.tanh(z / softcap)  # [c, V]
        out.append(token_entropy(z, temperature))  # [c]
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)  # [N]


@torch.no_grad()
def completion_entropies(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                         temperature: float, chunk: int = ENTROPY_CHUNK) -> torch.Tensor:
    """Token entropies of the last ``logits_to_keep`` tokens of ``input_ids`` ``[B, P+T]``: ``[B, T]`` float32.

    ``H_t`` is the entropy at ``temperature`` of the distribution token ``P+t`` was sampled from
    (the backbone's state at ``P+t-1`` through the LM head, see the module doc); 0 where
    ``attention_mask[:, P:]`` is 0. No gradient; only the real completion tokens reach the head.
    """
    out = _parts(model)[0](input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return entropies_from_hidden(model, out.last_hidden_state, attention_mask, logits_to_keep, temperature, chunk)


@torch.no_grad()
def entropies_from_hidden(model: Any, hidden: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                          temperature: float, chunk: int = ENTROPY_CHUNK) -> torch.Tensor:
    """:func:`completion_entropies` from the backbone's last hidden states ``[B, P+T, H]`` of that forward."""
    head = _parts(model)[1]
    scale, softcap = logit_transform(_base_model(model).config)
    states = hidden.detach()[:, -logits_to_keep - 1:-1]  # [B, T, H] states before each completion token
    mask = attention_mask[:, -logits_to_keep:].bool()  # [B, T]
    ents = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)  # [B, T]
    rows = states[mask.to(states.device)]  # [N, H] the real completion tokens only
    ents[mask] = head_entropies(rows, head, temperature, scale, softcap, chunk).to(mask.device)  # [N]
    return ents


def entropies_t1(model: Any, hidden: list[torch.Tensor] | None, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor, logits_to_keep: int) -> torch.Tensor | None:
    """The completion tokens' entropies at temperature 1 ``[B, T]`` from the last hidden states a forward over
    ``input_ids`` ``[B, P+T]`` left in ``hidden`` (:func:`capture_last_hidden`); ``None`` when they do not fit."""
    if not hidden or sum(h.size(0) for h in hidden) != input_ids.size(0) \
            or any(h.size(1) != input_ids.size(1) for h in hidden):
        return None
    return entropies_from_hidden(model, torch.cat(hidden), attention_mask, logits_to_keep, 1.0)


@contextlib.contextmanager
def capture_last_hidden(model: Any, enabled: bool = True) -> Iterator[list[torch.Tensor] | None]:
    """Inside the block, every forward of ``model``'s backbone appends its last hidden states ``[b, L, H]``
    (detached: the same storage, no copy) to the yielded list; ``None`` when not ``enabled`` or for a model
    without a backbone + LM head."""
    parts = _backbone_and_head(model) if enabled else None
    if parts is None:
        yield None
        return
    captured: list[torch.Tensor] = []

    def hook(module: Any, args: Any, output: Any) -> None:
        hidden = getattr(output, "last_hidden_state", None)
        if hidden is None and isinstance(output, (tuple, list)) and output:
            hidden = output[0]
        if isinstance(hidden, torch.Tensor):
            captured.append(hidden.detach())

    handle = parts[0].register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def entropy_sums(token_ids: torch.Tensor, entropies: torch.Tensor, mask: torch.Tensor,
                 connectors: Any = None, entropies_t1: torch.Tensor | None = None) -> torch.Tensor:
    """One forward's contribution to a step's sums, ``[N_SUMS]`` float32 (``token_ids``' device).

    ``[sum_t H_t m_t, sum_t m_t]``, then :meth:`ConnectorMatcher.sums` (zeros without ``connectors``),
    then ``[sum_t H1_t m_t, sum_t m_t]`` of ``entropies_t1`` (the entropies at temperature 1; zeros
    without them); ``token_ids``, ``entropies(_t1)`` and ``mask`` (1 for sampled tokens) are ``[B, T]``.
    """
    ents = entropies.detach().float()  # [B, T]
    valid = mask.to(ents.dtype)  # [B, T]
    total = torch.stack([torch.where(valid > 0, ents, 0.0).sum(), valid.sum()])  # [2]
    conn = connectors.sums(token_ids, ents, valid) if connectors is not None else total.new_zeros(4)  # [4]
    if entropies_t1 is None:
        t1 = total.new_zeros(2)
    else:
        ents1 = entropies_t1.detach().float().to(ents.device)  # [B, T]
        t1 = torch.stack([torch.where(valid > 0, ents1, 0.0).sum(), valid.sum()])  # [2]
    return torch.cat([total, conn.to(total.device), t1]).to(token_ids.device)  # [8]


def entropy_metrics(sums: list[float], connectors: Any = None) -> dict[str, float]:
    """``entropy/mean = sum H / n`` and ``entropy_t1/mean`` (NaN for no token) and, with ``connectors``,
    their three metrics.

    >>> entropy_metrics([3.0, 2.0, 0.0, 0.0, 0.0, 0.0, 5.0, 2.0])
    {'entropy/mean': 1.5, 'entropy_t1/mean': 2.5}
    """
    total, count = sums[0], sums[1]
    stats = {"entropy/mean": total / count if count > 0 else float("nan"),
             "entropy_t1/mean": sums[6] / sums[7] if sums[7] > 0 else float("nan")}
    if connectors is not None and count > 0:
        stats.update(connectors.stats_from_sums(sums[2:6], prefix=""))
    return stats
