"""Rollouts from merged LoRA weights: generation runs ``x @ (W + s*B@A)^T`` instead of ``x @ W^T + s*B(A(x))``.

During rollout generation every LoRA-wrapped linear layer costs a base matmul plus two small ones
(and their Python/dispatch overhead at every decoded token). Merging removes the small ones: on the
CPU demo generation takes 0.91x the time (a step 0.94x, ``benchmarks/step_breakdown.py``), since the
base matmuls dominate. :func:`merged_lora_weights` is a context manager that, for every LoRA
layer where it is exact, swaps the base layer's weight for a new tensor ``W + delta`` (peft's
``get_delta_weight``, summed over the active adapters) and marks the adapters merged, so peft's
forward calls the base layer only. On exit the *original* weight tensor objects are put back (never
add-then-subtract), so the training weights, their ``.grad`` and the optimiser's references are
untouched, bit for bit.

Exactness: a layer is merged only where both paths compute the same function, namely when

* it is a plain peft ``lora.Linear`` over an exact ``torch.nn.Linear`` (bitsandbytes 4/8-bit layers,
  GPT-2 ``Conv1D`` and embeddings are left unmerged),
* its weights are float32/float64 and no autocast is active (in half precision the rounding of
  ``W + delta`` would swallow a small LoRA delta),
* it is vanilla LoRA (no DoRA or other peft variant, no ``lora_bias``),
* its LoRA dropout is off: ``p == 0`` or the dropout module in eval mode (with train-mode
  dropout the unmerged branch is stochastic and merging would sample from another policy).

Any other layer simply stays unmerged (its own output is unchanged), and the caller gets a
:class:`MergeReport` naming what was skipped and why. The two paths differ only by float rounding
(~1e-7 relative in float32), so the sampled tokens match except at a numerical near-tie of the
sampler; the loss recomputes all log-probs with the unmerged adapter as before.

Memory: while generating, one extra copy of every merged (targeted) base weight is held
(SmolLM2-135M, all-linear: ~0.4 GB in float32); it is freed on exit.

Only peft is known here; which trainers may use it (hf backend, no vLLM, no sharded weights) is
decided in :mod:`egrc_lite.train.trainer`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch

EXACT_DTYPES = (torch.float32, torch.float64)


@dataclasses.dataclass
class MergeReport:
    """What :func:`merged_lora_weights` did: ``merged`` layers, and ``skipped`` ones counted by reason."""

    merged: int = 0
    skipped: Counter = dataclasses.field(default_factory=Counter)

    def note(self) -> str | None:
        """A one-line note when some LoRA layer generates unmerged, else ``None``."""
        if not self.skipped:
            return None
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return (f"merged-LoRA generation: {self.merged} layers merged, unmerged (exact, slower): {why}")


def _lora_linear_class() -> type | None:
    try:
        from peft.tuners.lora.layer import Linear
    except ImportError:  # pragma: no cover - peft is a dependency
        return None
    return Linear


def _skip_reason(layer: Any, adapters: list[str]) -> str | None:
    """Why ``layer`` (a peft ``lora.Linear``) must generate unmerged, or ``None`` when merging is exact."""
    base = layer.get_base_layer()
    if type(base) is not torch.nn.Linear:  # bnb Linear4bit/8bitLt subclass nn.Linear: refuse them too
        return "non-plain base layer (quantized?)"
    weight = base.weight
    if weight.dtype not in EXACT_DTYPES:
        return f"{str(weight.dtype).removeprefix('torch.')} base weight"
    if torch.is_autocast_enabled(weight.device.type):
        return "autocast"
    variants = getattr(layer, "lora_variant", {})
    dora = getattr(layer, "use_dora", {})
    for name in adapters:
        if name in variants or dora.get(name):
            return "LoRA variant (DoRA)"
        if getattr(layer, "lora_bias", {}).get(name):
            return "lora_bias"
        if layer.lora_A[name].weight.dtype != weight.dtype or layer.lora_B[name].weight.dtype != weight.dtype:
            return "adapter dtype differs from base"
        dropout = layer.lora_dropout[name]
        if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0 and dropout.training:
            return "LoRA dropout > 0 in train mode"
    return None


def plan_merge(model: torch.nn.Module) -> tuple[list[tuple[Any, list[str]]], Counter]:
    """``([(layer, active adapters)], skipped reasons)``: the LoRA layers of ``model`` that merge exactly."""
    linear = _lora_linear_class()
    layers: list[tuple[Any, list[str]]] = []
    skipped: Counter = Counter()
    if linear is None:
        return layers, skipped
    for module in model.modules():
        if not isinstance(module, linear) or module.disable_adapters or module.merged:
            continue  # adapters off or already merged (by peft): its forward is the base layer already
        adapters = [a for a in module.active_adapters if a in module.lora_A]
        if not adapters:
            continue
        reason = _skip_reason(module, adapters)
        if reason is None:
            layers.append((module, adapters))
        else:
            skipped[reason] += 1
    return layers, skipped


@contextlib.contextmanager
def merged_lora_weights(model: torch.nn.Module) -> Iterator[MergeReport]:
    """Inside the block, every exactly-mergeable LoRA layer of ``model`` runs on ``W + delta`` alone.

    Yields a :class:`MergeReport`. On exit (also on an exception) each base layer gets back its
    original weight ``Parameter`` object and each LoRA layer its original ``merged_adapters`` list.
    Meant for no-grad generation only: the merged weights do not require grad, and a backward
    through them would not reach the adapter.
    """
    layers, skipped = plan_merge(model)
    report = MergeReport(skipped=skipped)
    saved: list[tuple[Any, Any, Any]] = []  # (lora layer, base layer, original weight); original merged_adapters
    saved_adapters: list[list[str]] = []
    try:
        with torch.no_grad():
            for layer, adapters in layers:
                base = layer.get_base_layer()
                weight = base._parameters["weight"]
                merged = weight.detach().clone()
                for name in adapters:
                    merged += layer.get_delta_weight(name).to(merged.dtype)
                saved.append((layer, base, weight))
                saved_adapters.append(layer.merged_adapters)
                base._parameters["weight"] = torch.nn.Parameter(merged, requires_grad=False)
                layer.merged_adapters = list(adapters)  # peft's forward: `elif self.merged: base_layer(x)`
                report.merged += 1
        yield report
    finally:
        for (layer, base, weight), adapters_before in zip(reversed(saved), reversed(saved_adapters)):
            base._parameters["weight"] = weight
            layer.merged_adapters = adapters_before
