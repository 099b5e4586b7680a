"""Generation for evaluation and analysis: one interface, a registry, hf and vllm generators.

Owns: the :class:`~egrc_lite.generate.base.Generator` interface and prompt encoding (``base``),
the ``hf`` generator (transformers, ``hf``) and the ``vllm`` generator (``vllm``, imported only
when used). Generators are looked up by name with :func:`get_generator`; others plug in with
:func:`register_generator`. (The eval option that picks one is ``--backend``, for
compatibility; the training backends are :mod:`egrc_lite.backends`.)

May import: backends (model loading), config, data, runs, errors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egrc_lite.config import GENERATION_BATCH
from egrc_lite.generate.base import GenerationError, Generator, Messages, Sample, encode_prompt, think_token_count

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

__all__ = ["GENERATORS", "GenerationError", "Generator", "Messages", "Sample", "encode_prompt", "get_generator",
           "register_generator", "think_token_count"]


def _load_hf(cfg: EgrcConfig, **kwargs: Any) -> Generator:
    """The hf generator (:mod:`egrc_lite.generate.hf`)."""
    from egrc_lite.generate.hf import load_hf_generator

    return load_hf_generator(cfg, **kwargs)


def _load_vllm(cfg: EgrcConfig, **kwargs: Any) -> Generator:
    """The vLLM backend (:mod:`egrc_lite.generate.vllm`); vllm is imported only when it is used."""
    from egrc_lite.generate.vllm import load_vllm_generator

    return load_vllm_generator(cfg, **kwargs)


GeneratorFactory = Callable[..., Generator]
GENERATORS: dict[str, GeneratorFactory] = {"hf": _load_hf, "vllm": _load_vllm}


def register_generator(name: str, factory: GeneratorFactory) -> None:
    """Make ``factory(cfg, *, adapter=None, batch_size=8, **kw) -> Generator`` available as ``name``."""
    GENERATORS[name] = factory


def get_generator(name: str, cfg: EgrcConfig, *, adapter: str | Path | None = None, batch_size: int = GENERATION_BATCH,
                  **kwargs: Any) -> Generator:
    """The generation backend ``name`` for the model of ``cfg`` (plus ``adapter``); unknown names list the valid ones."""
    if name not in GENERATORS:
        raise GenerationError(f"unknown generation backend '{name}'; valid: {', '.join(GENERATORS)}")
    return GENERATORS[name](cfg, adapter=adapter, batch_size=batch_size, **kwargs)
