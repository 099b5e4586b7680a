"""Training backends, and where every model comes from.

Owns: choosing a training backend (``base``: ``hf`` or ``unsloth``, :class:`BackendError`);
resolving and loading a model source and its tokenizer (``sources``, ``gguf``, ``tiny``: used by training,
generation, merge and analysis alike); and the backends themselves behind one small interface,
:class:`TrainingBackend` (``hf``: transformers + PEFT on a CPU or GPU; ``unsloth``: Unsloth with
in-process vLLM on a GPU, whose module imports unsloth and so is imported only on that path).
Generation for evaluation is not here: see :mod:`egrc_lite.generate`.

May import: config, data, errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from egrc_lite.backends.base import BACKENDS, CPU_CHECK_ENV, GPU_EXTRA, BackendError, resolve_backend

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig, StageConfig

__all__ = ["BACKENDS", "CPU_CHECK_ENV", "GPU_EXTRA", "BackendError", "TrainingBackend", "import_training_backend",
           "load_backend", "resolve_backend"]


@dataclass(frozen=True)
class TrainingBackend:
    """What the stage runner needs from a training backend.

    ``load_policy(cfg, init_adapter=None) -> (peft_model, tokenizer, model_source)``;
    ``grpo_overrides(cfg, stage, model) -> dict`` of extra ``GRPOConfig`` settings (vLLM on unsloth);
    ``generation(model) -> str``: how rollouts of that loaded model are sampled, for the manifest.
    """

    name: str
    reason: str
    load_policy: Callable[..., tuple[Any, Any, str]]
    grpo_overrides: Callable[[EgrcConfig, StageConfig, Any], dict[str, Any]]
    generation: Callable[[Any], str]


def _no_overrides(cfg: EgrcConfig, stage: StageConfig, model: Any) -> dict[str, Any]:
    return {}


def _transformers_generation(model: Any) -> str:
    return "transformers generate"


def import_training_backend(cfg: EgrcConfig) -> tuple[str, str]:
    """Resolve ``cfg.backend`` and import its module now: ``(backend, reason in words)``.

    Call it right after the config is known and before anything imports transformers, TRL or PEFT
    (``compress``, ``train`` and ``sweep`` do): on unsloth it imports unsloth, which must come first
    to patch them, with ``UNSLOTH_VLLM_STANDBY=1`` set beforehand when ``unsloth.vllm_standby`` is on
    (unsloth reads it at import). Importing transformers first makes unsloth take its
    "already imported" branch, a slower and less tested path.
    """
    name, reason = resolve_backend(cfg.backend)
    if name == "unsloth":
        if cfg.unsloth.vllm_standby:
            os.environ.setdefault("UNSLOTH_VLLM_STANDBY", "1")
        import egrc_lite.backends.unsloth  # noqa: F401
    return name, reason


def load_backend(cfg: EgrcConfig) -> TrainingBackend:
    """The training backend ``cfg.backend`` resolves to (imported by :func:`import_training_backend`)."""
    name, reason = import_training_backend(cfg)
    if name == "unsloth":  # pragma: no cover - GPU only (and the CPU check script)
        from egrc_lite.backends import unsloth

        return TrainingBackend(name, reason, unsloth.load_policy, unsloth.grpo_config_overrides, unsloth.generation)
    from egrc_lite.backends import hf

    return TrainingBackend(name, reason, hf.load_policy, _no_overrides, _transformers_generation)
