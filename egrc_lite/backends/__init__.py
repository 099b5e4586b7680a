"""Training backends, and where every model comes from.

Owns: choosing a training backend (``base``: ``hf`` or ``unsloth``, :class:`BackendError`);
resolving and loading a model source and its tokenizer (``sources``, ``tiny``: used by training,
generation, merge and analysis alike); and the backends themselves behind one small interface,
:class:`TrainingBackend` (``hf``: transformers + PEFT on a CPU or GPU; ``unsloth``: Unsloth with
in-process vLLM on a GPU, whose module imports unsloth and so is imported only on that path).
Generation for evaluation is not here: see :mod:`egrc_lite.generate`.

May import: config, data, errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from egrc_lite.backends.base import BACKENDS, CPU_CHECK_ENV, GPU_EXTRA, BackendError, resolve_backend

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig, StageConfig

__all__ = ["BACKENDS", "CPU_CHECK_ENV", "GPU_EXTRA", "BackendError", "TrainingBackend", "load_backend",
           "resolve_backend"]


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


def load_backend(cfg: EgrcConfig) -> TrainingBackend:
    """The training backend ``cfg.backend`` resolves to, its module imported.

    On unsloth this imports unsloth (which patches TRL, transformers and PEFT), so call it before
    anything imports those; :func:`egrc_lite.train.run_schedule` does.
    """
    name, reason = resolve_backend(cfg.backend)
    if name == "unsloth":  # pragma: no cover - GPU only (and the CPU check script)
        from egrc_lite.backends import unsloth

        return TrainingBackend(name, reason, unsloth.load_policy, unsloth.grpo_config_overrides, unsloth.generation)
    from egrc_lite.backends import hf

    return TrainingBackend(name, reason, hf.load_policy, _no_overrides, _transformers_generation)
