"""Sampling that drops each finished row from the batch (``generate_pruned``), instead of transformers
``generate``, which decodes every row (finished ones as padding) until the last one ends.

On a CPU a decoding step of a 135M model costs about 140 ms for one row and 300 ms for sixteen
(reading the weights is most of it), so the rows that end early cost nothing once they have ended,
and the rest decode in a smaller batch. Same model calls as ``generate`` (a left-padded prefill,
then one token per row with a growing KV cache), same logits processors (built by transformers from
the same generation config), same sampling (softmax, then ``torch.multinomial``; argmax when not
sampling). The distribution of every completion is therefore unchanged; the tokens drawn under one
seed are not the same as ``generate``'s, since the random draws fall on a smaller batch once a row
ends. With no row ending early the tokens are identical (``tests/test_pruned_generation.py``).

What it does not handle (beam search, an encoder-decoder, processors that are not row-wise and
stateless, stopping strings or criteria, several return sequences, a cache that cannot drop rows)
goes to ``model.generate`` unchanged: :func:`pruning_plan` says why.
"""

from __future__ import annotations

from typing import Any

import torch

_ROW_WISE = ("TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper",
             "RepetitionPenaltyLogitsProcessor")
"""Logits processors that look at one row at a time and keep no state between steps."""


def pruning_plan(model: Any, generation_config: Any = None, **kwargs: Any) -> tuple[Any, Any, str | None]:
    """``(generation config, logits processors, None)`` as transformers would resolve them for
    ``model.generate(generation_config=..., **kwargs)``, or ``(None, None, reason)`` when
    :func:`generate_pruned` cannot reproduce that call."""
    from transformers.generation.logits_process import LogitsProcessorList

    if getattr(model.config, "is_encoder_decoder", False):
        return None, None, "encoder-decoder model"
    try:
        config, model_kwargs = model._prepare_generation_config(generation_config, **kwargs)
    except (AttributeError, TypeError, ValueError) as err:
        return None, None, f"generation config not resolved ({err})"
    if model_kwargs:  # images, token types, ...: inputs this loop does not pass on
        return None, None, f"model inputs {', '.join(sorted(model_kwargs))}"
    checks = [(config.num_beams == 1, "beam search"), (config.num_return_sequences == 1, "several sequences"),
              (config.max_new_tokens is not None, "no max_new_tokens"), (not config.stop_strings, "stop strings"),
              (config.eos_token_id is not None, "no EOS token"),
              (getattr(config, "assistant_model", None) is None, "assisted decoding")]
    for ok, reason in checks:
        if not ok:
            return None, None, reason
    try:
        processors = model._get_logits_processor(generation_config=config, logits_processor=LogitsProcessorList(),
                                                 device=str(model.device), model_kwargs={})
    except (AttributeError, TypeError, ValueError) as err:
        return None, None, f"logits processors not built ({err})"
    odd = [type(p).__name__ for p in processors if type(p).__name__ not in _ROW_WISE]
    if odd:
        return None, None, f"logits processors {', '.join(odd)}"
    return config, processors, None


def _ids(value: Any) -> list[int]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def generate_pruned(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    generation_config: Any = None, **kwargs: Any) -> torch.Tensor:
    """``model.generate(input_ids, attention_mask, generation_config, **kwargs)``'s output ``[B, P + N]``
    (prompt, then each completion with its EOS, then padding), finished rows dropped from the batch as
    they end; calls ``model.generate`` itself when :func:`pruning_plan` finds no plan."""
    from transformers import DynamicCache

    kwargs.pop("disable_compile", None)
    config, processors, reason = pruning_plan(model, generation_config, **kwargs)
    if reason is not None:  # the class's generate: an instance attribute may be this function (the trainer's)
        return type(model).generate(model, input_ids=input_ids, attention_mask=attention_mask,
                                    generation_config=generation_config, **kwargs)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    eos = torch.tensor(_ids(config.eos_token_id), device=input_ids.device)
    pad = int(_ids(config.pad_token_id)[0]) if config.pad_token_id is not None else int(eos[0])
    rows, budget = input_ids.size(0), int(config.max_new_tokens)
    out = torch.full((rows, budget), pad, dtype=input_ids.dtype, device=input_ids.device)  # [B, N]
    alive = torch.arange(rows, device=input_ids.device)  # the batch rows still decoding
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # left padding, as generate computes them
    seqs = input_ids
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1].float()  # [B, V]
    next_position = positions[:, -1] + 1  # [B]
    used = 0
    for step in range(budget):
        scores = processors(seqs, logits)
        if config.do_sample:
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)  # [b]
        else:
            tokens = scores.argmax(dim=-1)
        out[alive, step] = tokens
        used = step + 1
        going = ~torch.isin(tokens, eos)  # [b]
        if step == budget - 1 or not going.any():
            break
        if not going.all():
            keep = going.nonzero().flatten()
            alive, tokens, mask, seqs = alive[keep], tokens[keep], mask[keep], seqs[keep]
            next_position = next_position[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)
        seqs = torch.cat([seqs, tokens[:, None]], dim=1)
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position[:, None],
                       past_key_values=cache, use_cache=True).logits[:, -1].float()
        next_position = next_position + 1
    return torch.cat([input_ids, out[:, :used]], dim=1)
