"""Micro-batches grouped by completion length, each cut to its own longest completion (``train.group_by_length``).

TRL pads a step's completions to the longest one and splits the (shuffled) rows into
``gradient_accumulation_steps`` micro-batches, so every loss forward and backward runs over the full
padded width: one completion that reaches the cap makes the whole step cost as if all of them had.
:func:`group_by_length` re-splits the step's rows, those with loss weight first and longest first
within each kind, so long completions share a micro-batch, and drops the trailing columns that are
padding in every row of a micro-batch. The trainer then runs the forward and backward on the rows
with loss weight only (:func:`loss_rows`, :func:`take_rows`); :func:`sample_dropped` marks which of
the others get a no-grad forward for the entropy metrics (``analysis.dropped_entropy_rows``).

Exactness: the gradient of a step is the sum over its micro-batches, each normalised by the step's
``num_items_in_batch`` (fixed at generation), so which row sits in which micro-batch does not change
it beyond float summation order. Dropping trailing all-padding columns changes nothing either: the
loss and the entropy metrics mask those positions, and under causal attention no earlier position
sees them. Leaving out a row without loss weight removes terms that are zero (rows of a batch do
not interact). Prompts are left alone (they are left-padded, and cutting their leading padding would
move the position ids of the real tokens). ``tests/test_microbatch.py`` trains with it on and off
and compares the adapters.

A batch with an entry this module does not know (images, TRL additions) is left exactly as TRL
split it.
"""

from __future__ import annotations

from typing import Any

import torch

COMPLETION_KEYS = frozenset({"completion_ids", "completion_mask", "tool_mask", "old_per_token_logps",
                             "ref_per_token_logps", "sampling_per_token_logps", "importance_sampling_ratio"})
"""Entries laid out ``[rows, completion position]``: their trailing padding columns are dropped."""
MEASURE = "egrc_entropy_weight"
"""Per-row entry :func:`sample_dropped` adds: the weight of a dropped row's entropies in the step's sums (0: not
measured)."""
ROW_KEYS = frozenset({"prompt_ids", "prompt_mask", "advantages", MEASURE})
"""Entries with one row per completion that are kept whole."""


def _known(batch: dict[str, Any], rows: int) -> bool:
    for key, value in batch.items():
        if value is None or (isinstance(value, torch.Tensor) and value.ndim == 0):
            continue  # shared by all micro-batches (num_items_in_batch, the scored marker)
        if key not in COMPLETION_KEYS | ROW_KEYS or not isinstance(value, torch.Tensor) or value.size(0) != rows:
            return False
    return True


def loss_rows(batch: dict[str, Any]) -> torch.Tensor:
    """``[R]`` bool: the rows with some loss weight (``completion_mask * tool_mask`` not all zero)."""
    mask = batch["completion_mask"]
    if batch.get("tool_mask") is not None:
        mask = mask * batch["tool_mask"]
    return (mask != 0).any(dim=1)


def _extent(mask: torch.Tensor) -> torch.Tensor:
    """``[R]``: each row's last unmasked position + 1 (0 for a fully masked row)."""
    positions = torch.arange(1, mask.size(1) + 1, device=mask.device)
    return (positions * (mask != 0)).amax(dim=1)


def take_rows(batch: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    """The rows ``rows`` (indices) of ``batch``, completion entries cut to the longest of them (at least one
    column, so shapes stay valid); shared 0-dim entries as they are."""
    width = batch["completion_mask"].size(1)
    keep = max(int(_extent(batch["completion_mask"][rows]).max()) if len(rows) else 0, 1)
    out = {}
    for key, value in batch.items():
        if _per_row(value):
            value = value[rows]
            if key in COMPLETION_KEYS and value.ndim >= 2 and value.size(1) == width:
                value = value[:, :keep]
        out[key] = value
    return out


def regroupable(batch: dict[str, Any]) -> bool:
    """Whether every entry of ``batch`` is one this module knows how to split by rows."""
    return "completion_mask" in batch and _known(batch, batch["completion_mask"].size(0))


def group_by_length(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``batches`` (TRL's micro-batches of one generation) regrouped into as many equal
    micro-batches, each cut to its longest completion; ``batches`` itself when that is not possible.

    Rows with loss weight come first, longest first, then the others longest first: the rows the
    backward needs share as few micro-batches as possible (see the trainer's ``compute_loss``).
    """
    if not batches or not all(regroupable(b) for b in batches):
        return batches
    keys, width, rows = batches[0].keys(), batches[0]["completion_mask"].size(1), batches[0]["completion_mask"].size(0)
    if any(b.keys() != keys or b["completion_mask"].shape != (rows, width) for b in batches):
        return batches
    whole = {key: (torch.cat([b[key] for b in batches]) if _per_row(batches[0][key]) else batches[0][key])
             for key in keys}
    extent = _extent(whole["completion_mask"])  # [R]
    order = torch.argsort(extent + (width + 1) * loss_rows(whole), descending=True, stable=True)
    return [take_rows(whole, chunk) for chunk in order.split(rows)]


def sample_dropped(batches: list[dict[str, Any]], limit: int | None, generator: torch.Generator | None = None
                   ) -> list[dict[str, Any]]:
    """``batches`` with :data:`MEASURE` per row: for the rows without loss weight, ``1`` when ``limit`` is
    ``None`` or they are at most ``limit``, else ``D / limit`` on a uniform sample of ``limit`` of the ``D``
    (so weighted sums estimate the totals without bias) and ``0`` on the others; ``0`` on rows with weight."""
    dropped = [~loss_rows(b) for b in batches]  # [rows] each
    total = int(sum(int(d.sum()) for d in dropped))
    chosen = torch.ones(total, dtype=torch.bool)
    weight = 1.0
    if limit is not None and total > limit:
        chosen = torch.zeros(total, dtype=torch.bool)
        chosen[torch.randperm(total, generator=generator)[:limit]] = True
        weight = total / limit
    out, start = [], 0
    for batch, rows in zip(batches, dropped):
        values = torch.zeros(rows.size(0), dtype=torch.float32, device=rows.device)
        n = int(rows.sum())
        values[rows] = chosen[start:start + n].to(values.device).float() * weight
        start += n
        out.append({**batch, MEASURE: values})
    return out


def _per_row(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim > 0
