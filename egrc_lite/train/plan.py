"""Will it fit? Peak GPU memory of a run from its config and the model's shapes, and the changes that make it fit.

``egrc-lite plan --preset r1-1.5b --gpu-memory 24`` and ``egrc-lite compress --dry-run`` read no weights: the
model's ``config.json`` (shipped with the presets, a local directory with its safetensors headers, or the
Hugging Face cache) gives the shapes (:mod:`egrc_lite.train.shapes`), :mod:`egrc_lite.train.memory` the
components. :func:`plan` adds the verdict and, when the run does not fit, the ``--set`` lines that make it fit,
each checked by re-estimating the config with that override.

Imports config, presets and train.arguments only (pure functions; no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from egrc_lite.train.memory import GIB, Component, Estimate, estimate, fix_candidates
from egrc_lite.train.shapes import ModelShape, model_shape

__all__ = ["GIB", "Component", "Estimate", "ModelShape", "Plan", "estimate", "model_shape", "plan"]


@dataclass
class Plan:
    estimate: Estimate
    shape: ModelShape
    fixes: list[tuple[str, Estimate]] = field(default_factory=list)  # single --set lines that fit, lowest peak first
    combined: list[str] | None = None  # several --set lines that fit together when no single one does


def _fits(presets: list[str], overrides: list[str], gpu_gib: float, backend: str | None) -> Estimate | None:
    from egrc_lite.config import ConfigError
    from egrc_lite.presets import resolve

    try:
        cfg = resolve(presets, overrides)
    except ConfigError:
        return None
    return estimate(cfg, model_shape(cfg), gpu_gib=gpu_gib, backend=backend)


def plan(presets: list[str], overrides: list[str], *, gpu_gib: float | None, backend: str | None = None) -> Plan:
    """The estimate for ``presets`` + ``overrides``; on a card of ``gpu_gib`` GiB that it does not fit, the single
    ``--set`` fixes that fit (lowest peak first) or, failing those, a greedy combination."""
    from egrc_lite.presets import resolve

    cfg = resolve(presets, overrides)
    shape = model_shape(cfg)
    est = estimate(cfg, shape, gpu_gib=gpu_gib, backend=backend)
    result = Plan(est, shape)
    if gpu_gib is None or est.fits:
        return result
    tried: dict[str, Estimate] = {}
    for line in fix_candidates(cfg, est, gpu_gib):
        new = _fits(presets, [*overrides, line], gpu_gib, backend)
        if new is not None:
            tried[line] = new
    result.fixes = _best_single(tried)
    if not result.fixes:
        result.combined = _greedy(presets, overrides, gpu_gib, backend, est)
    return result


def _best_single(tried: dict[str, Estimate]) -> list[tuple[str, Estimate]]:
    """Fitting fixes, lowest peak first; of the gpu_memory_utilization values only the highest that fits
    (the largest KV cache), of the accumulation steps only the smallest that fits (the least slowdown)."""
    by_key: dict[str, list[tuple[str, Estimate]]] = {}
    for line, e in tried.items():  # candidates come in increasing order of their value per key
        if e.fits:
            by_key.setdefault(line.split("=")[0], []).append((line, e))
    # the highest utilization that fits (the largest KV cache), the first value of anything else
    keep = [lines[-1] if key == "unsloth.gpu_memory_utilization" else lines[0] for key, lines in by_key.items()]
    return sorted(keep, key=lambda item: item[1].peak)


def _kv_short(est: Estimate) -> bool:
    return est.kv_capacity_tokens is not None and est.kv_capacity_tokens < est.longest_sequence


def _greedy(presets: list[str], overrides: list[str], gpu_gib: float, backend: str | None,
            est: Estimate) -> list[str] | None:
    """Apply the override that lowers the peak most (growing vLLM's KV cache when that is what fails), until the
    run fits; ``None`` when nothing more helps."""
    from egrc_lite.presets import resolve

    chosen: list[str] = []
    current = est
    for _ in range(6):
        cfg = resolve(presets, [*overrides, *chosen])
        options = []
        for line in fix_candidates(cfg, current, gpu_gib):
            key = line.split("=")[0]
            if any(c.split("=")[0] == key for c in chosen):
                continue
            new = _fits(presets, [*overrides, *chosen, line], gpu_gib, backend)
            if new is None:
                continue
            if new.fits:
                return [*chosen, line]
            kv_gain = (new.kv_capacity_tokens or 0) - (current.kv_capacity_tokens or 0)
            options.append((current.peak - new.peak, kv_gain, line, new))
        useful = [o for o in options if o[0] > 0 or o[1] > 0]
        if not useful:
            return None
        if _kv_short(current):  # first make vLLM's KV cache hold a sequence, at the lowest peak
            useful = [o for o in useful if not _kv_short(o[3])] or useful
            _, _, line, current = min(useful, key=lambda o: (_kv_short(o[3]), o[3].peak))
        else:
            _, _, line, current = max(useful, key=lambda o: (o[0], o[1]))
        chosen.append(line)
    return None
