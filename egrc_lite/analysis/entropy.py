"""Token-level diagnostics of the entropy conflict (method.md s7; paper s4.3, Fig. 3d and 3e).

Pure functions, no I/O:

- :func:`token_entropy`: ``H_t = -sum_v p_t(v) log p_t(v)`` with ``p_t = softmax(z_t / tau)``;
- :func:`gradient_proxy`: ``|| onehot(o_t) - p_t ||_2``, the norm of ``d log p_t(o_t) / d z_t`` times ``tau``;
- :func:`exact_token_grad_norms`: ``|| d log pi(o_t | q, o_<t) / d theta ||_2`` over the trainable (LoRA)
  parameters ``theta``, one backward pass per token;
- :func:`connector_stats`: how often connectors ("wait", "therefore", ...) occur, their entropy
  against the other tokens, and the most frequent tokens among the top 20% by entropy;
- :class:`ConnectorMatcher` (via :func:`get_connector_matcher`): the same connector metrics for a
  training step from token ids, with the connector id set computed once per tokenizer.

Their correlations (Pearson, Spearman) are in :mod:`egrc_lite.analysis.correlation`.

Tensor convention: ``logits`` ``[B, T, V]`` are *aligned* with ``tokens`` ``[B, T]``: ``logits[b, t]``
is the distribution ``tokens[b, t]`` was sampled from (already shifted by one from a causal LM's
output). A token is a connector when its text, with the byte-level ``Ġ`` / SentencePiece ``▁``
space marker and surrounding whitespace removed and lowercased, is in the connector list; a
connector that a tokenizer splits into several tokens is not counted (common ones are single
tokens in the Qwen, Llama and DeepSeek vocabularies).

>>> normalize_token("ĠTherefore"), normalize_token(" Wait"), normalize_token("▁So")
('therefore', 'wait', 'so')
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from egrc_lite.config import DEFAULT_CONNECTORS

if TYPE_CHECKING:  # pragma: no cover
    import torch

SPACE_MARKERS = "Ġ▁"
"""Leading space markers of byte-level BPE (``Ġ``) and SentencePiece (``▁``) token strings."""

CONNECTOR_KEYS = ("connector/share", "entropy/connector", "entropy/other")
"""Per-step training metrics of :meth:`ConnectorMatcher.stats_from_sums`, before the ``train/`` prefix."""


# ---------------------------------------------------------------------------------------------
# entropy and gradient magnitude
# ---------------------------------------------------------------------------------------------
def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of ``softmax(logits / temperature)`` over the last axis: ``[B, T, V] -> [B, T]``.

    ``H = -sum_v p(v) log p(v)``, computed from ``log_softmax`` in float32 (stable for large
    logits; a ``-inf`` logit contributes 0). This is the full distribution at the sampling
    temperature; a top-p cut used while sampling is not applied.

    >>> import math, torch
    >>> p = torch.tensor([0.5, 0.25, 0.25])
    >>> h = token_entropy((2.0 * p.log()).view(1, 1, 3), temperature=2.0)
    >>> round(float(h), 4), round(1.5 * math.log(2), 4)
    (1.0397, 1.0397)
    """
    import torch

    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [B, T, V]
    plogp = torch.where(torch.isfinite(logp), logp.exp() * logp, torch.zeros_like(logp))  # [B, T, V]
    return -plogp.sum(dim=-1)  # [B, T]


def gradient_proxy(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The logit-space gradient magnitude ``|| onehot(o_t) - p_t ||_2``: ``[B, T, V], [B, T] -> [B, T]``.

    ``d log p_t(o_t) / d z_t = (onehot(o_t) - p_t) / tau`` for ``p_t = softmax(z_t / tau)``, so the
    proxy is that gradient's norm times ``tau``. It is computed as
    ``sqrt((1 - p(o))^2 + sum_{v != o} p(v)^2)`` with ``1 - p(o)`` summed from the other tokens,
    so confident tokens (``p(o) -> 1``) keep their small value without cancellation.

    >>> import math, torch
    >>> logits = torch.tensor([0.5, 0.25, 0.25]).log().view(1, 1, 3)
    >>> round(float(gradient_proxy(logits, torch.tensor([[0]]))), 4), round(math.sqrt(0.375), 4)
    (0.6124, 0.6124)
    """
    import torch

    probs = torch.softmax(logits.float() / temperature, dim=-1)  # [B, T, V]
    others = probs.scatter(-1, tokens.long().unsqueeze(-1), 0.0)  # [B, T, V] p with o_t zeroed
    miss = others.sum(dim=-1)  # [B, T] = 1 - p(o_t)
    return (miss.square() + others.square().sum(dim=-1)).sqrt()  # [B, T]


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def forward_logits(model: Any, input_ids: torch.Tensor, keep: int) -> torch.Tensor:
    """Logits of the last ``keep`` positions, ``[B, T] -> [B, keep, V]`` (``logits_to_keep`` when supported)."""
    import inspect

    if "logits_to_keep" in inspect.signature(_base(model).forward).parameters:
        return model(input_ids=input_ids, logits_to_keep=keep).logits  # [B, keep, V]
    return model(input_ids=input_ids).logits[:, -keep:]  # [B, keep, V]


def exact_token_grad_norms(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                           positions: Sequence[tuple[int, int]], temperature: float = 1.0) -> torch.Tensor:
    """``|| grad_theta log pi(o_t) ||_2`` over the parameters with ``requires_grad`` (the LoRA adapter).

    ``positions`` are ``(b, t)`` indices into ``input_ids`` ``[B, T]``: the token ``o_t =
    input_ids[b, t]`` scored by the logits at ``t - 1``, ``log pi(o_t) = log_softmax(z_{t-1} /
    tau)[o_t]`` (the training objective's temperature-scaled policy). Each row is run on its own
    without padding (positions where ``attention_mask`` is 0 are dropped), the model in eval mode
    (no dropout); one forward per row with a selected token, one backward per token. Returns
    ``[N]`` float64 norms in the order of ``positions``.
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; wrap it with a LoRA adapter (peft)")
    by_row: dict[int, list[tuple[int, int]]] = {}
    for i, (b, t) in enumerate(positions):
        by_row.setdefault(int(b), []).append((i, int(t)))
    out = torch.zeros(len(positions), dtype=torch.float64)  # [N]
    was_training = model.training
    model.eval()
    try:
        for b, items in by_row.items():
            row = input_ids[b]  # [T]
            valid = attention_mask[b].bool() if attention_mask is not None else torch.ones_like(row, dtype=torch.bool)
            index = valid.long().cumsum(0) - 1  # [T] position in the unpadded row
            ids = row[valid].unsqueeze(0)  # [1, T']
            local = []
            for i, t in items:
                if not (0 < t < row.numel() and bool(valid[t]) and int(index[t]) >= 1):
                    raise ValueError(f"position ({b}, {t}) is not a scored token (needs a real token before it)")
                local.append((i, int(index[t])))
            first = min(t for _, t in local)
            keep = ids.size(1) - (first - 1)
            with torch.enable_grad():
                logits = forward_logits(model, ids, keep)  # [1, keep, V]
                offset = ids.size(1) - keep
                for i, t in local:
                    logp = torch.log_softmax(logits[0, t - 1 - offset].float() / temperature, dim=-1)  # [V]
                    grads = torch.autograd.grad(logp[ids[0, t]], params, retain_graph=True, allow_unused=True)
                    total = sum(float(g.double().square().sum()) for g in grads if g is not None)
                    out[i] = math.sqrt(total)
            del logits
    finally:
        model.train(was_training)
    return out


# ---------------------------------------------------------------------------------------------
# connectors
# ---------------------------------------------------------------------------------------------
def normalize_token(text: str) -> str:
    """A token's text for matching: leading ``Ġ``/``▁`` markers and whitespace removed, lowercased."""
    return text.lstrip(SPACE_MARKERS + " \t\r\n").strip().lower()


def display_token(text: str) -> str:
    """:func:`normalize_token` with control characters escaped; a whitespace-only token shows its
    whitespace (``\\n\\n``, ``␣``).

    >>> display_token(" Wait"), display_token("\\n\\n"), display_token("  "), display_token("\\x1c")
    ('wait', '\\\\n\\\\n', '␣␣', '\\\\x1c')
    """
    norm = normalize_token(text) or text.replace(" ", "␣")
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in norm)
    return escaped or "(empty)"


def connector_set(connectors: Iterable[str] | None = None) -> frozenset[str]:
    """The normalized connector words (``AnalysisConfig.connectors``; the defaults when None)."""
    words = DEFAULT_CONNECTORS if connectors is None else connectors
    return frozenset(w for w in (normalize_token(c) for c in words) if w)


def _mean(total: float, count: float) -> float:
    return total / count if count > 0 else float("nan")


def high_entropy_tokens(tokens: Sequence[str], entropies: Sequence[float], connectors: frozenset[str],
                        top_frac: float = 0.2, top_k: int = 20) -> dict[str, Any]:
    """The most frequent tokens among the top ``top_frac`` of tokens by entropy (paper Fig. 3e).

    The top ``ceil(top_frac * n)`` tokens by entropy (ties in text order) are counted by
    :func:`display_token`; each of the ``top_k`` most frequent has ``count``, ``share`` (of the
    high-entropy tokens), ``mean_entropy`` and ``connector``.
    """
    n = len(tokens)
    k = math.ceil(top_frac * n) if n else 0
    top = sorted(range(n), key=lambda i: -entropies[i])[:k]
    counts: Counter[str] = Counter()
    sums: dict[str, float] = {}
    for i in top:
        key = display_token(tokens[i])
        counts[key] += 1
        sums[key] = sums.get(key, 0.0) + float(entropies[i])
    n_conn = sum(1 for i in top if normalize_token(tokens[i]) in connectors)
    rows = [{"token": tok, "count": c, "share": c / k, "mean_entropy": sums[tok] / c, "connector": tok in connectors}
            for tok, c in sorted(counts.items(), key=lambda kv: (-kv[1], -sums[kv[0]]))[:top_k]]
    return {"frac": top_frac, "n_tokens": k, "threshold": float(entropies[top[-1]]) if top else None,
            "connector_share": n_conn / k if k else None, "top_tokens": rows}


def connector_stats(tokens: Sequence[str], entropies: Sequence[float], connectors: Iterable[str] | None = None,
                    *, top_frac: float = 0.2, top_k: int = 20) -> dict[str, Any]:
    """Connector share and entropy at connectors vs other tokens, plus :func:`high_entropy_tokens`.

    ``tokens`` are decoded token strings (one per entropy); ``share = #connector tokens / #tokens``,
    ``entropy_connector`` / ``entropy_other`` are mean entropies (None without such tokens).

    >>> toks = ["Wait", ",", " the", " sum", " is", " 5", ".", " Therefore", " 5"]
    >>> ents = [2.0, 0.1, 0.3, 0.2, 0.1, 0.4, 0.2, 1.8, 0.1]
    >>> s = connector_stats(toks, ents, ["wait", "therefore"])
    >>> round(s["connector_share"], 3), s["entropy_connector"], round(s["entropy_other"], 3)
    (0.222, 1.9, 0.2)
    >>> [(r["token"], r["connector"]) for r in s["high_entropy"]["top_tokens"]]
    [('wait', True), ('therefore', True)]
    """
    if len(tokens) != len(entropies):
        raise ValueError(f"connector_stats: {len(tokens)} tokens for {len(entropies)} entropies")
    words = connector_set(connectors)
    is_conn = [normalize_token(t) in words for t in tokens]
    n_conn = sum(is_conn)
    h_conn = math.fsum(float(h) for h, c in zip(entropies, is_conn) if c)
    h_other = math.fsum(float(h) for h, c in zip(entropies, is_conn) if not c)
    n = len(tokens)

    def mean_or_none(total: float, count: int) -> float | None:
        return total / count if count else None

    return {
        "n_tokens": n, "n_connector": n_conn, "connector_share": n_conn / n if n else None,
        "entropy_all": mean_or_none(h_conn + h_other, n), "entropy_connector": mean_or_none(h_conn, n_conn),
        "entropy_other": mean_or_none(h_other, n - n_conn), "connectors": sorted(words),
        "high_entropy": high_entropy_tokens(tokens, entropies, words, top_frac, top_k),
    }


def connector_token_ids(tokenizer: Any, connectors: Iterable[str] | None = None) -> frozenset[int]:
    """Ids of the vocabulary entries whose :func:`normalize_token` text is a connector word."""
    words = connector_set(connectors)
    return frozenset(int(i) for tok, i in tokenizer.get_vocab().items() if normalize_token(tok) in words)


class ConnectorMatcher:
    """Connector metrics for token ids; the connector id set is computed once (a vocabulary scan).

    For a training step, accumulate :meth:`sums` over micro-batches (and reduce it across
    processes: it is a ``[4]`` tensor of counts and entropy sums), then :meth:`stats_from_sums`.
    """

    def __init__(self, tokenizer: Any, connectors: Iterable[str] | None = None) -> None:
        self.connectors = connector_set(connectors)
        self.ids = connector_token_ids(tokenizer, self.connectors)
        self._id_tensors: dict[Any, Any] = {}

    def id_tensor(self, device: Any = None) -> torch.Tensor:
        import torch

        if device not in self._id_tensors:
            self._id_tensors[device] = torch.tensor(sorted(self.ids), dtype=torch.long, device=device)
        return self._id_tensors[device]

    def mask(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Bool tensor of ``token_ids``' shape: which ids are connectors."""
        import torch

        return torch.isin(token_ids, self.id_tensor(token_ids.device))

    def sums(self, token_ids: torch.Tensor, entropies: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[n_connector, sum H at connectors, n_other, sum H at others]`` (float32, ``token_ids``' device).

        ``token_ids``, ``entropies`` and ``mask`` (1 for real completion tokens) are ``[B, T]``.
        """
        import torch

        valid = torch.ones_like(entropies) if mask is None else mask.to(entropies.dtype)  # [B, T]
        conn = self.mask(token_ids).to(entropies.dtype) * valid  # [B, T]
        other = valid - conn  # [B, T]
        ent = entropies.detach()  # [B, T]
        return torch.stack([conn.sum(), (ent * conn).sum(), other.sum(), (ent * other).sum()]).float()  # [4]

    @staticmethod
    def stats_from_sums(sums: Any, prefix: str = "train/") -> dict[str, float]:
        """``{prefix}connector/share``, ``{prefix}entropy/connector``, ``{prefix}entropy/other`` (nan if undefined)."""
        n_conn, h_conn, n_other, h_other = (float(v) for v in sums)
        share, e_conn, e_other = (f"{prefix}{k}" for k in CONNECTOR_KEYS)
        return {share: _mean(n_conn, n_conn + n_other), e_conn: _mean(h_conn, n_conn), e_other: _mean(h_other, n_other)}


_MATCHERS: dict[tuple[int, tuple[str, ...]], tuple[Any, ConnectorMatcher]] = {}
_MAX_MATCHERS = 8


def get_connector_matcher(tokenizer: Any, connectors: Iterable[str] | None = None) -> ConnectorMatcher:
    """A cached :class:`ConnectorMatcher` per (tokenizer object, connector list)."""
    key = (id(tokenizer), tuple(sorted(connector_set(connectors))))
    hit = _MATCHERS.get(key)
    if hit is not None and hit[0] is tokenizer:
        return hit[1]
    if len(_MATCHERS) >= _MAX_MATCHERS:
        _MATCHERS.pop(next(iter(_MATCHERS)))
    matcher = ConnectorMatcher(tokenizer, connectors)
    _MATCHERS[key] = (tokenizer, matcher)
    return matcher
