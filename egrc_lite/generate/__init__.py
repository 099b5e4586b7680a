"""Generation for evaluation and analysis: one interface, a registry, hf and vllm generators.

Owns: the :class:`~egrc_lite.generate.base.Generator` interface and prompt encoding (``base``),
the ``hf`` generator (transformers, ``hf``) and the ``vllm`` generator (``vllm``, imported only
when used). Generators are looked up by name with :func:`get_generator`; others plug in with
:func:`register_generator`. (The eval option that picks one is ``--backend``, for
compatibility; the training backends are :mod:`egrc_lite.backends`.)

May import: backends (model loading), config, data, runs, errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egrc_lite.config import GENERATION_BATCH
from egrc_lite.generate.base import (
    GenerationError, Generator, Messages, Sample, encode_prompt, request_chunk, think_token_count,
)

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

__all__ = ["GENERATORS", "GenerationError", "Generator", "Messages", "Sample", "encode_prompt", "get_generator",
           "register_generator", "request_chunk", "think_token_count"]


def _load_hf(cfg: EgrcConfig, *, prompts: Sequence[Messages] | None = None, max_tokens: int | None = None,
             **kwargs: Any) -> Generator:
    """The hf generator (:mod:`egrc_lite.generate.hf`); the workload (``prompts``, ``max_tokens``) sizes nothing."""
    from egrc_lite.generate.hf import load_hf_generator

    return load_hf_generator(cfg, **kwargs)


def _load_vllm(cfg: EgrcConfig, **kwargs: Any) -> Generator:
    """The vLLM backend (:mod:`egrc_lite.generate.vllm`); vllm is imported only when it is used."""
    from egrc_lite.generate.vllm import load_vllm_generator

    return load_vllm_generator(cfg, **kwargs)


GeneratorFactory = Callable[..., Generator]
GENERATORS: dict[str, GeneratorFactory] = {"hf": _load_hf, "vllm": _load_vllm}


def register_generator(name: str, factory: GeneratorFactory) -> None:
    """Make ``factory(cfg, *, adapter=None, batch_size=8, prompts=None, max_tokens=None, **kw) -> Generator``
    available as ``name`` (``prompts`` and ``max_tokens`` arrive only when the caller knows the workload)."""
    GENERATORS[name] = factory


def get_generator(name: str, cfg: EgrcConfig, *, adapter: str | Path | None = None, batch_size: int = GENERATION_BATCH,
                  prompts: Sequence[Messages] | None = None, max_tokens: int | None = None, **kwargs: Any) -> Generator:
    """The generation backend ``name`` for the model of ``cfg`` (plus ``adapter``); unknown names list the valid ones.

    ``prompts`` (every chat prompt it will get) and ``max_tokens`` describe the workload, for generators that
    size themselves by it (vllm: ``max_model_len``); other keyword arguments go to the backend (vllm: to
    ``vllm.LLM``, winning over its defaults).
    """
    if name not in GENERATORS:
        raise GenerationError(f"unknown generation backend '{name}'; valid: {', '.join(GENERATORS)}")
    workload = {k: v for k, v in (("prompts", prompts), ("max_tokens", max_tokens)) if v is not None}
    return GENERATORS[name](cfg, adapter=adapter, batch_size=batch_size, **workload, **kwargs)
