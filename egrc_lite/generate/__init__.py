"""Generation backends for evaluation: one interface, a registry, and the ``hf`` backend.

A :class:`Generator` turns chat prompts into sampled completions::

    generate(prompts, n=, max_tokens=, temperature=, top_p=, seed=) -> list[list[Sample]]

one inner list of ``n`` samples per prompt, in prompt order. Each :class:`Sample` carries the
decoded text, the generated token ids (the end-of-sequence token left out), whether the length
cap cut it off, and how many of its tokens belong to the think part (up to and including
``</think>``; all of them when there is no ``</think>``).

Backends are looked up by name with :func:`get_generator`; ``hf`` (transformers, batched with
left padding, CPU or GPU, optional PEFT adapter) is built in, and others (vLLM) plug in with
:func:`register_generator`.

>>> think_token_count([5, 6, 99, 7], close_ids=[99])
3
>>> think_token_count([5, 6, 7], close_ids=[99])
3
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from egrc_lite.errors import EgrcError

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]
THINK_CLOSE = "</think>"


class GenerationError(EgrcError, RuntimeError):
    """A backend or model that cannot be used for generation; one line naming the fix."""


@dataclass
class Sample:
    """One sampled completion."""

    text: str
    token_ids: list[int] = field(repr=False)
    truncated: bool
    think_tokens: int

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def answer_tokens(self) -> int:
        return self.num_tokens - self.think_tokens


class Generator(Protocol):
    """What evaluation needs from a backend."""

    name: str
    model_source: str

    def generate(self, prompts: Sequence[Messages], *, n: int, max_tokens: int, temperature: float,
                 top_p: float, seed: int) -> list[list[Sample]]:
        """``n`` samples for each chat prompt (a list of ``{"role", "content"}`` messages)."""
        ...  # pragma: no cover


def think_token_count(token_ids: Sequence[int], close_ids: Sequence[int]) -> int:
    """Tokens up to and including the first ``</think>`` (given as its token ids); all when absent."""
    k = len(close_ids)
    if k == 0:
        return len(token_ids)
    for i in range(len(token_ids) - k + 1):
        if list(token_ids[i:i + k]) == list(close_ids):
            return i + k
    return len(token_ids)


def _first_stop(ids: Sequence[int], stop: set[int]) -> int | None:
    for i, tok in enumerate(ids):
        if tok in stop:
            return i
    return None


class HFGenerator:
    """Batched sampling with transformers ``generate`` (left padding), on a CPU or a GPU.

    Prompts are expanded ``n`` times, sorted by length to cut padding, and generated in batches
    of ``batch_size`` sequences. Sampling is seeded per call (the global RNG state is restored).
    """

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 8, model_source: str = "") -> None:
        if batch_size < 1:
            raise GenerationError(f"--batch-size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.model_source = model_source
        self.device = next(model.parameters()).device
        self.stop_ids = self._stop_ids()
        close = tokenizer.encode(THINK_CLOSE, add_special_tokens=False)
        self.think_close_ids: list[int] = close if tokenizer.decode(close) == THINK_CLOSE else []
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self._warned_caps: set[int] = set()

    def _stop_ids(self) -> set[int]:
        ids: set[int] = set()
        for value in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        if not ids:
            raise GenerationError("the tokenizer has no end-of-sequence token; set one in its tokenizer_config.json")
        return ids

    def encode_prompt(self, messages: Messages) -> list[int]:
        """Token ids of the chat template with the assistant turn opened (method.md s6)."""
        if not getattr(self.tokenizer, "chat_template", None):
            text = "\n".join(m["content"] for m in messages) + "\n"
        else:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, prompts: Sequence[Messages], *, n: int, max_tokens: int, temperature: float,
                 top_p: float, seed: int) -> list[list[Sample]]:
        encoded = [self.encode_prompt(p) for p in prompts]
        jobs = sorted(((i, s) for i in range(len(prompts)) for s in range(n)), key=lambda j: len(encoded[j[0]]))
        out: list[list[Sample | None]] = [[None] * n for _ in prompts]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            samples = self._generate_batch([encoded[i] for i, _ in chunk], max_tokens, temperature, top_p,
                                           seed + start)
            for (i, s), sample in zip(chunk, samples):
                out[i][s] = sample
        return [[s for s in row if s is not None] for row in out]

    def _budget(self, longest_prompt: int, max_tokens: int) -> int:
        if self.max_positions and longest_prompt + max_tokens > self.max_positions:
            budget = max(1, self.max_positions - longest_prompt)
            if max_tokens not in self._warned_caps:  # once per setting, not per batch
                self._warned_caps.add(max_tokens)
                logger.warning("max_tokens %d exceeds the model's %d positions: responses are capped at "
                               "%d positions minus the prompt (and count as truncated there)",
                               max_tokens, self.max_positions, self.max_positions)
            return budget
        return max_tokens

    def _generate_batch(self, batch: list[list[int]], max_tokens: int, temperature: float, top_p: float,
                        seed: int) -> list[Sample]:
        import torch

        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.stop_ids)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.device)  # [B, T]
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        budget = self._budget(width, max_tokens)
        kwargs: dict[str, Any] = {"max_new_tokens": budget, "pad_token_id": pad, "eos_token_id": sorted(self.stop_ids)}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            generated = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)  # [B, T + new]
        samples = []
        for row in generated[:, width:].tolist():
            stop = _first_stop(row, self.stop_ids)
            ids = row if stop is None else row[:stop]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            samples.append(Sample(text=text, token_ids=ids, truncated=stop is None,
                                  think_tokens=think_token_count(ids, self.think_close_ids)))
        return samples


def load_model_tokenizer(cfg: EgrcConfig) -> tuple[str, str, Any]:
    """``(local path, source description, tokenizer)`` of the model of ``cfg``, for a generation backend;
    loading problems become one-line :class:`GenerationError` s."""
    from egrc_lite.backends import BackendError
    from egrc_lite.backends.hf import load_tokenizer, resolve_model_source

    try:
        path, source = resolve_model_source(cfg)
        return path, source, load_tokenizer(path, cfg)
    except BackendError as err:
        raise GenerationError(str(err)) from None
    except OSError as err:
        raise GenerationError(f"could not load the tokenizer of '{cfg.model.name_or_path}': "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


def _load_hf(cfg: EgrcConfig, *, adapter: str | Path | None = None, batch_size: int = 8,
             device: str | None = None) -> HFGenerator:
    """Load the base model of ``cfg`` (and ``adapter`` on top, merged) for generation."""
    import torch
    from transformers import AutoModelForCausalLM

    path, source, tokenizer = load_model_tokenizer(cfg)
    dtype = "auto" if cfg.model.dtype == "auto" else getattr(torch, cfg.model.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.revision and path == cfg.model.name_or_path:
        kwargs["revision"] = cfg.model.revision
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GenerationError(f"could not load model '{cfg.model.name_or_path}': {first}") from None
    if adapter is not None:
        model, source = _attach_adapter(model, Path(adapter).expanduser(), source)
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(target).eval()
    return HFGenerator(model, tokenizer, batch_size=batch_size, model_source=source)


def _attach_adapter(model: Any, adapter: Path, source: str) -> tuple[Any, str]:
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise GenerationError(f"--adapter {adapter}: no adapter_config.json there (expected a PEFT adapter)")
    peft_model = PeftModel.from_pretrained(model, str(adapter))
    # Merging gives the same outputs and generates faster than running the LoRA branch.
    return peft_model.merge_and_unload(), f"{source} + adapter:{adapter.resolve()}"


def _load_vllm(cfg: EgrcConfig, **kwargs: Any) -> Generator:
    """The vLLM backend (:mod:`egrc_lite.generate.vllm`); vllm is imported only when it is used."""
    from egrc_lite.generate.vllm import load_vllm_generator

    return load_vllm_generator(cfg, **kwargs)


GeneratorFactory = Callable[..., Generator]
GENERATORS: dict[str, GeneratorFactory] = {"hf": _load_hf, "vllm": _load_vllm}


def register_generator(name: str, factory: GeneratorFactory) -> None:
    """Make ``factory(cfg, *, adapter=None, batch_size=8, **kw) -> Generator`` available as ``name``."""
    GENERATORS[name] = factory


def get_generator(name: str, cfg: EgrcConfig, *, adapter: str | Path | None = None, batch_size: int = 8,
                  **kwargs: Any) -> Generator:
    """The generation backend ``name`` for the model of ``cfg`` (plus ``adapter``); unknown names list the valid ones."""
    if name not in GENERATORS:
        raise GenerationError(f"unknown generation backend '{name}'; valid: {', '.join(GENERATORS)}")
    return GENERATORS[name](cfg, adapter=adapter, batch_size=batch_size, **kwargs)
